"""Choosing a tool-call threshold: each question's probability of opening a call read from the
first token's log-probabilities, the threshold that best separates the two kinds of question, the
refusals, and `tunery models calibrate` on the tiny model (table, JSON, --save)."""

from __future__ import annotations

import json
import math
import re

import pytest
from click.testing import CliRunner

from tunery.chat import ChatMessage, Completion, GenerationParams, TokenLogprob, Usage
from tunery.errors import InvalidInput
from tunery.evals.calibrate import GRID, Decision, calibrate_threshold, choose

TOOLS = [{"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def tok(text: str, p: float) -> TokenLogprob:
    return TokenLogprob(text, math.log(p), text.encode())


class Firsts:
    """A chat model whose first token's top log-probabilities are scripted per question."""

    name, can_stream, parallel_requests = "scripted", False, 1

    def __init__(self, tops: dict[str, list[TokenLogprob]]) -> None:
        self.tops, self.asked = tops, []

    def generate(self, messages: list[ChatMessage], params: GenerationParams) -> Completion:
        self.asked.append((messages, params))
        top = tuple(self.tops[messages[-1].content])
        return Completion(top[0].token, "length", Usage(1, 1), self.name, logprobs=((top[0].__class__(
            top[0].token, top[0].logprob, top[0].utf8, top),),))


def test_each_question_is_asked_once_for_one_raw_token_with_its_tools():
    model = Firsts({"time in Oslo?": [tok("<", 0.9), tok("<tool", 0.05), tok("The", 0.03)],
                    "hello!": [tok("Hi", 0.6), tok("<", 0.3), tok(" <", 0.05)],
                    "is Oslo nice?": [tok("<", 0.5), tok("Yes", 0.4)]})
    cal = calibrate_threshold(model, [{"question": "time in Oslo?", "expect": {"tool_calls": [{"name": "get_time"}]},
                                       "tools": TOOLS},
                                      {"question": "hello!", "expect": "no_tool"},
                                      {"question": "is Oslo nice?", "expect": "no_tool"}],
                              system="Be brief.", tools=TOOLS)
    assert [(d.needs_call, round(d.p_call, 6), d.greedy_calls) for d in cal.decisions] == [
        (True, 0.95, True), (False, 0.3, False), (False, 0.5, True)]
    assert cal.at(0) == (1, 1)  # the model alone calls on "is Oslo nice?"
    messages, params = model.asked[0]
    assert [m.content for m in messages] == ["Be brief.", "time in Oslo?"]
    assert (params.max_tokens, params.temperature, params.tool_choice, params.tools) == (1, 0.0, "auto", tuple(TOOLS))
    assert params.tool_call_threshold == 0 and params.logprobs and params.top_logprobs == 20
    assert 0.5 < cal.threshold <= 0.95 and cal.at(cal.threshold) == (1, 2)


def d(needs: bool, p: float) -> Decision:
    return Decision("q", needs, p, greedy_calls=p > 0.5)


def test_choose_takes_the_middle_of_the_best_thresholds():
    # needs: 0.99, 0.98; none: 0.4 (no call anyway), 0.97 (a call): only (0.97, 0.98] stops it
    assert choose([d(True, 0.99), d(True, 0.98), d(False, 0.4), d(False, 0.97)]) == 0.98
    # a wide gap: the tied thresholds run from 0.6 to 0.95; the middle one of them is taken
    tied = [t for t in GRID if 0.55 < t <= 0.95]
    assert choose([d(True, 0.95), d(False, 0.55)]) == tied[(len(tied) - 1) // 2]


def test_choose_turns_the_gate_off_when_it_cannot_help():
    assert choose([d(True, 0.3), d(True, 0.6), d(False, 0.001)]) == 0.0  # nothing to stop
    assert choose([d(True, 0.7), d(False, 0.9)]) == 0.0  # the wrong way round: a gate only loses calls


def test_bad_calibration_sets_are_refused_by_what_is_missing_all_at_once_before_asking():
    model = Firsts({"q": [tok("<", 0.9)]})
    bad_tool = [{"type": "function", "function": {"name": "no spaces allowed"}}]
    with pytest.raises(InvalidInput) as e:
        calibrate_threshold(model, [{"question": "q", "tools": TOOLS},
                                    {"question": "q", "expect": " no_tool "},
                                    {"question": "q", "expect": "no_tool", "tools": bad_tool},
                                    {"question": "q", "expect": {"tool_calls": [{"arguments": {}}]}, "tools": TOOLS}])
    assert str(e.value).startswith("question 1: 'expect' must be")
    assert "question 2: no tools" in str(e.value) and "question 3: tools[0].function.name" in str(e.value)
    assert "question 4: 'expect' must be" in str(e.value) and model.asked == []
    # the evaluator's own reading of expect: an empty list of calls is "no call"
    with pytest.raises(InvalidInput, match="both kinds: 0 need a call and 2 need none"):
        calibrate_threshold(model, [{"question": "q", "expect": "no_tool", "tools": TOOLS},
                                    {"question": "q", "expect": {"tool_calls": []}, "tools": TOOLS}])


def write_questions(path, n=3):
    rows = [{"question": f"What time is it in city {i}?", "expect": {"tool_calls": [
        {"name": "get_time", "arguments": {"city": f"city {i}"}}]}, "tools": TOOLS} for i in range(n)]
    rows += [{"question": f"Tell me a fact about sea number {i}.", "expect": "no_tool", "tools": TOOLS}
             for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_calibrate_cli_prints_the_table_and_saves_only_when_asked(tiny_model, tmp_path):
    from tunery.cli.main import cli
    from tunery.models import get

    data = write_questions(tmp_path / "held-out.jsonl")
    runner = CliRunner()
    shown = runner.invoke(cli, ["models", "calibrate", "tiny-random", str(data), "--system", "Be brief."])
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert "3 questions need a call, 3 need none" in text and "(not saved: pass --save to keep it)" in text
    assert re.search(r"threshold: (off \(no threshold beats the model alone\)|0\.\d+) \(not saved", text)
    assert "tool_call_threshold" not in get("tiny-random").meta
    saved = runner.invoke(cli, ["models", "calibrate", "tiny-random", str(data), "--save", "--json"])
    assert saved.exit_code == 0, saved.output
    out = json.loads(saved.output)
    greedy = [q["greedy_calls"] for q in out["questions"]]
    assert out["saved"] and len(out["questions"]) == 6 and out["table"][0] == {
        "threshold": 0.0, "calls_kept": sum(greedy[:3]), "no_calls": 3 - sum(greedy[3:])}
    # saved as the model's own; "off" is saved by removing it
    assert get("tiny-random").meta.get("tool_call_threshold") == (out["threshold"] or None)
    shown = runner.invoke(cli, ["models", "show", "tiny-random"])
    assert "tool_call_threshold" in shown.output and ("off" if not out["threshold"] else "calibrate") in shown.output


def test_calibrate_cli_names_a_bad_file_and_an_unknown_model(tiny_model, tmp_path):
    from tunery.cli.main import cli

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "hi", "tools": []}\n', encoding="utf-8")
    r = CliRunner().invoke(cli, ["models", "calibrate", "tiny-random", str(bad)])
    assert r.exit_code == 1 and "question 1: 'expect' must be" in str(r.exception)  # main() prints it
    r = CliRunner().invoke(cli, ["models", "calibrate", "no-such-model", str(write_questions(tmp_path / "q.jsonl"))])
    assert r.exit_code == 1 and "unknown model 'no-such-model'" in str(r.exception)


def test_calibrate_cli_refuses_to_save_on_a_deployment_before_asking(tiny_model, tmp_path, monkeypatch):
    from tunery.cli.main import cli
    from tunery.serving import deployments
    from tunery.serving.local import LocalChatModel

    deployments.create("travel-prod", "tiny-random")
    monkeypatch.setattr(LocalChatModel, "load", lambda *a, **k: pytest.fail("asked before refusing"))
    r = CliRunner().invoke(cli, ["models", "calibrate", "travel-prod", str(write_questions(tmp_path / "q.jsonl")),
                                 "--save"])
    assert r.exit_code == 1 and "deployment of model 'tiny-random'" in str(r.exception)
