"""Preference data (DPO) in OpenAI's format: every problem by line and field, the format found by
`tunery data validate/stats/split/scrub`, token stats, and the bundled travel pairs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from tunery.cli.main import cli
from tunery.data import validate_bytes
from tunery.data.preference import encode_pairs, file_kind, load_pairs, preference_stats
from tunery.errors import InvalidInput
from tunery.examples import TRAVEL_QUESTIONS

TRAVEL = Path(TRAVEL_QUESTIONS).parent
SYSTEM = "You are a concise travel helper."


def pair(i: int = 0, **over) -> dict:
    d = {"input": {"messages": [{"role": "system", "content": SYSTEM},
                                {"role": "user", "content": f"What should I see in city {i}?"}]},
         "preferred_output": [{"role": "assistant", "content": f"Walk the old town of city {i}. When do you go?"}],
         "non_preferred_output": [{"role": "assistant", "content": "Stay at the Grand Hotel."}]}
    d.update(over)
    return d


CALL = {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{not json"}}
TOOLS = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}}}]


def jsonl(rows: list) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


def problems(rows: list, purpose: str = "validation") -> list[str]:
    return [i.format() for i in validate_bytes(jsonl(rows), purpose=purpose).errors]


def test_valid_pairs_validate_and_load():
    rows = [pair(i) for i in range(10)]
    report = validate_bytes(jsonl(rows))
    assert report.ok and report.n_examples == 10
    pairs = load_pairs(jsonl(rows))
    assert len(pairs) == 10 and pairs[3].chosen.startswith("Walk the old town of city 3")
    assert pairs[0].rejected == "Stay at the Grand Hotel." and pairs[0].prompt.messages[-1].content.endswith("0?")
    assert file_kind(jsonl(rows)) == "preference" and file_kind(b'{"messages": []}\n') == "chat"


@pytest.mark.parametrize(("change", "expect"), [
    ({"input": None}, "line 1, input: input must be an object"),
    ({"preferred_output": []}, "line 1, preferred_output: preferred_output must be a list of exactly one assistant "
                               "message, got 0 messages"),
    ({"non_preferred_output": [{"role": "user", "content": "x"}]},
     "line 1, non_preferred_output[0].role: the output must be an assistant message, not user"),
    ({"preferred_output": [{"role": "assistant", "content": " "}]}, "line 1, preferred_output[0].content: content is "
                                                                     "empty"),
    ({"preferred_output": [{"role": "assistant", "content": "x", "weight": 0}]},
     "line 1, preferred_output[0].weight: an output cannot have weight 0"),
    ({"input": {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}},
     "line 1, input.messages[1].role: the prompt must end with a user message, not assistant"),
    ({"input": {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}},
     "line 1, input.messages[1].role: two consecutive user messages"),
    ({"input": {"messages": [{"role": "robot", "content": "a"}]}}, "line 1, input.messages[0].role: unknown role"),
    ({"input": {"messages": [{"role": "user", "content": "a"}], "tool": []}}, "line 1, input.tool: unknown key"),
    ({"score": 1}, 'line 1, score: unknown key "score"'),
    # DPO trains on the answers' text: a call would be trained on as an empty answer
    ({"preferred_output": [{"role": "assistant", "content": None, "tool_calls": [CALL]}]},
     "line 1, preferred_output[0].tool_calls: tool calls in a preference output are not supported"),
    ({"non_preferred_output": [{"role": "assistant", "content": "x", "tool_calls": [CALL]}]},
     "line 1, non_preferred_output[0].tool_calls: tool calls in a preference output are not supported"),
    # the prompt's tools and tool messages follow the chat examples' rules
    ({"input": {"messages": [{"role": "user", "content": "a"}], "tools": [{}]}},
     'line 1, input.tools[0].type: type must be "function"'),
    ({"input": {"messages": [{"role": "user", "content": "a"}], "tools": [{"type": "function", "function": {"name": 5}}]}},
     "line 1, input.tools[0].function.name: name must be 1-64 letters"),
    ({"input": {"messages": [{"role": "user", "content": "a"}, {"role": "tool", "tool_call_id": "x", "content": "r"},
                             {"role": "user", "content": "b"}]}},
     "line 1, input.messages[1].tool_call_id: 'x' answers no earlier tool call"),
    ({"input": {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": None,
                                                                "tool_calls": [CALL]},
                             {"role": "tool", "tool_call_id": "c1", "content": "r"}, {"role": "user", "content": "b"}]}},
     "line 1, input.messages[1].tool_calls[0].function.name: calls 'weather', but the example declares no tools"),
])
def test_each_problem_is_named_by_line_and_field(change, expect):
    found = problems([pair(**change)])
    assert any(p.startswith(expect) for p in found), found


def test_every_problem_of_a_line_is_reported_and_a_missing_key_named():
    bad = {"input": {"messages": [{"role": "user", "content": ""}]}, "preferred_output": "yes"}
    found = problems([pair(0), bad])
    assert "line 2, input.messages[0].content: content is empty" in found
    assert any(p.startswith("line 2, preferred_output: preferred_output must be a list") for p in found)
    assert any(p.startswith('line 2, non_preferred_output: missing "non_preferred_output"') for p in found)


def test_a_prompt_may_call_tools_as_a_chat_example_does():
    calls = [{"id": cid, "type": "function", "function": {"name": "weather", "arguments": "{}"}} for cid in ("c1", "c2")]
    prompt = {"messages": [{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": None,
                                                                      "tool_calls": calls},
                           {"role": "tool", "tool_call_id": "c1", "content": "sun"},
                           {"role": "tool", "tool_call_id": "c2", "content": "rain"},  # two answers in a row
                           {"role": "user", "content": "So?"}], "tools": TOOLS}
    rows = [pair(i) for i in range(9)] + [pair(9, input=prompt)]
    assert validate_bytes(jsonl(rows)).ok
    loaded = load_pairs(jsonl(rows))[-1]
    assert loaded.prompt.tools == tuple(TOOLS) and len(loaded.prompt.messages[1].tool_calls) == 2


def test_openai_s_own_example_with_empty_tools_and_parallel_tool_calls_is_valid():
    """OpenAI's DPO guide writes the prompt as {"messages": [...], "tools": [], "parallel_tool_calls": true}."""
    rows = [pair(i, input={**pair(i)["input"], "tools": [], "parallel_tool_calls": True}) for i in range(10)]
    report = validate_bytes(jsonl(rows))
    assert report.ok, report.format()
    assert load_pairs(jsonl(rows))[0].prompt.tools is None  # no tools declared: trained as a plain prompt
    calls = [{"id": c, "type": "function", "function": {"name": "weather", "arguments": "{}"}} for c in ("c1", "c2")]
    prompt = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": None, "tool_calls": calls},
                           {"role": "tool", "tool_call_id": "c1", "content": "r"},
                           {"role": "tool", "tool_call_id": "c2", "content": "r"}, {"role": "user", "content": "b"}],
              "tools": TOOLS, "parallel_tool_calls": False}
    assert problems([pair(input=prompt)]) == [
        "line 1, input.messages[1].tool_calls: 2 calls in one message, but parallel_tool_calls is false"]
    assert problems([pair(input={**prompt, "parallel_tool_calls": "no"})])[0].startswith(
        'line 1, input.parallel_tool_calls: parallel_tool_calls must be true or false, got "no"')


def test_a_chat_line_in_a_file_of_pairs_is_named_by_validate():
    """The first line makes the file a preference file (as stats and the DPO loader read it)."""
    chat = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    report = validate_bytes(jsonl([pair(i) for i in range(9)] + [chat]))
    assert [i.format() for i in report.errors] == [
        "line 10: a chat example, not a preference pair: a DPO file holds only pairs"]
    other = problems([pair(0), {"question": "?"}])  # neither format: named as a pair would be
    assert 'line 2, question: unknown key "question": a preference pair holds input, preferred_output and ' \
           "non_preferred_output" in other
    assert validate_bytes(jsonl([chat] * 10 + [pair(0)])).ok  # a chat file: a pair is its prompt + preferred


def test_a_broken_first_line_does_not_make_a_file_of_pairs_a_chat_file():
    """The format is the first JSON object line's: a DPO job would otherwise call the pairs chat examples."""
    data = b"\n" + b'{"input": {"messages": [{"role": "user", "content": "a"}]}, "preferred_o\n' + jsonl(
        [pair(i) for i in range(10)])
    assert file_kind(data) == "preference" and file_kind(b"[1]\n" + jsonl([pair(0)])) == "preference"
    assert file_kind(b"not json\n") == "chat"
    report = validate_bytes(data)
    assert [i.line for i in report.errors] == [2] and report.n_examples == 10
    chat = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    assert problems([b"oops", pair(0), chat])[-1] == ("line 3: a chat example, not a preference pair: a DPO file "
                                                       "holds only pairs")


def test_a_line_too_long_is_named_by_stats_and_the_trainer(tmp_path: Path, tiny_model):
    from tunery.data.text import MAX_LINE_BYTES

    rows = [pair(i) for i in range(10)]
    rows[4] = pair(4, preferred_output=[{"role": "assistant", "content": "x" * (MAX_LINE_BYTES + 1)}])
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(jsonl(rows))
    with pytest.raises(InvalidInput, match="line 5: the line is .* bytes, longer than"):
        load_pairs(path)
    stats = invoke("stats", str(path), "--model", "tiny-random", "--json")
    assert stats.exit_code == 0, stats.output
    assert json.loads(stats.stdout)["n_pairs"] == 9
    assert "1 problem(s) on 1 line(s); only the 9 valid pairs are counted" in stats.stderr


def test_the_trainer_refuses_a_chat_line_or_too_few_pairs():
    chat = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    with pytest.raises(InvalidInput, match="line 11: a chat example, not a preference pair"):
        load_pairs(jsonl([pair(i) for i in range(10)] + [chat]))
    with pytest.raises(InvalidInput, match="only 3 pairs"):
        load_pairs(jsonl([pair(i) for i in range(3)]))
    assert len(load_pairs(jsonl([pair(0)]), purpose="validation")) == 1


def test_stats_count_prompt_chosen_and_rejected_tokens(tiny_model):
    from tunery.chat import Conversation
    from tunery.chat_template import encode, prompt_ids
    from tunery.models.loading import load_tokenizer

    tok = load_tokenizer(tiny_model)
    pairs = load_pairs(jsonl([pair(i) for i in range(3)]), purpose="validation")
    stats = preference_stats(pairs, tok)
    p = pairs[0]
    chosen = encode(p.conversation(p.chosen), tok)
    assert stats.n_pairs == 3 and stats.chosen.min == chosen.n_trained
    assert stats.prompt.max == len(prompt_ids(tok, list(p.prompt.to_dicts())))
    # chosen and rejected share the prompt's tokens, labelled nowhere
    c, r = encode_pairs(pairs, tok)[0]
    n = stats.prompt.min
    assert c.input_ids[:n] == r.input_ids[:n] and set(c.labels[:n]) == {-100}
    assert c.input_ids == encode(Conversation((*p.prompt.messages, *p.conversation(p.chosen).messages[-1:])),
                                 tok).input_ids


def invoke(*args: str):
    return CliRunner().invoke(cli, ["data", *args])


def test_the_cli_finds_the_format(tmp_path: Path, tiny_model):
    path = tmp_path / "pairs.jsonl"
    bad = pair(10, preferred_output=[{"role": "assistant", "content": "Mail me at ana@example.com?"}])
    path.write_bytes(jsonl([pair(i) for i in range(10)] + [bad]))
    ok = invoke("validate", str(path))
    assert ok.exit_code == 0 and "11 valid examples" in ok.output, ok.output
    stats = invoke("stats", str(path), "--model", "tiny-random", "--json")
    assert stats.exit_code == 0, stats.output
    assert json.loads(stats.output)["n_pairs"] == 11 and json.loads(stats.output)["format"] == "preference"
    scrub = invoke("scrub", str(path), "-o", str(tmp_path / "clean.jsonl"))
    assert "line 11, preferred_output[0].content: EMAIL" in scrub.output, scrub.output
    clean = (tmp_path / "clean.jsonl").read_text()
    assert "[EMAIL]" in clean and "ana@" not in clean and len(load_pairs(tmp_path / "clean.jsonl")) == 11
    split = invoke("split", str(path), "-f", "0.2", "--seed", "1")
    assert split.exit_code == 0
    assert len(load_pairs(tmp_path / "pairs.valid.jsonl", purpose="validation")) == 2


# --- the bundled travel pairs ---------------------------------------------------------------------

def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-zà-ÿ']+", text.lower()))


def test_the_bundled_pairs_teach_what_the_system_message_asks():
    from tunery.evals import find_recommendations

    train = load_pairs(TRAVEL / "preferences.jsonl")
    valid = load_pairs(TRAVEL / "preferences-validation.jsonl", purpose="validation")
    assert len(train) >= 60 and len(valid) >= 10
    system = json.loads((TRAVEL / "train.jsonl").read_text().splitlines()[0])["messages"][0]["content"]
    held_out = [json.loads(line)["question"] for line in TRAVEL_QUESTIONS.read_text().splitlines() if line.strip()]
    naming = 0
    for p in train + valid:
        assert p.prompt.system == system
        assert p.chosen.rstrip().endswith("?") and find_recommendations(p.chosen) == [], p.chosen
        naming += bool(re.search(r"\b(?:[A-Z][\w'&-]+ ){0,3}(?:Hotel|Airlines?|Air|Inn|Café|Palace)\b|"
                                 r"\bat the\b|\bBook\b|\bTry\b|\bGo to\b|\bUse\b|\bbest\b.*\bis\b", p.rejected))
        q = _words(p.prompt.messages[-1].content)
        for h in held_out:
            assert len(q & _words(h)) / len(q | _words(h)) < 0.6, (p.prompt.messages[-1].content, h)
    assert not {p.prompt.messages[-1].content for p in train} & {p.prompt.messages[-1].content for p in valid}
    for name in ("preferences.jsonl", "preferences-validation.jsonl"):  # the exercise's city stays held out
        assert "rome" not in _words((TRAVEL / name).read_text(encoding="utf-8"))
    # about half the rejected answers name an establishment, the rest refuse a fair question
    assert 0.35 < naming / len(train + valid) < 0.8


def test_too_few_pairs_are_counted_as_pairs():
    assert any("only 3 preference pairs: the OpenAI" in m for m in problems([pair(i) for i in range(3)], "training"))


def test_a_pair_repeats_another_only_with_the_same_rejected_answer():
    """Two samples of one model can share the prompt and the preferred answer against two rejected
    ones: two pairs, not a duplicate (the bundled on-policy pairs hold 17 such)."""
    other = pair(0, non_preferred_output=[{"role": "assistant", "content": "Try the Ritz."}])
    report = validate_bytes(jsonl([pair(i) for i in range(9)] + [other, pair(3)]))
    assert report.ok and [i.format() for i in report.warnings] == ["line 11: duplicate of line 4"]


def test_the_bundled_onpolicy_pairs_prefer_the_behaviour_the_checks_ask_for():
    """Model-written pairs (the supervised fine-tune's own samples): every preferred answer passes
    the quickstart's checks for its question's intent, every pair is sampled on a training prompt
    (none on a held-out question), and each prompt's intent is known."""
    from tunery import quickstart
    from tunery.evals import find_recommendations

    pairs = load_pairs(TRAVEL / "preferences-onpolicy.jsonl")
    report = validate_bytes((TRAVEL / "preferences-onpolicy.jsonl").read_bytes())
    assert len(pairs) >= 150 and report.ok and not report.warnings
    expect = {p["question"]: p["expect"] for p in quickstart.training_prompts()}
    system = quickstart.system_message()
    kinds = {"answer": 0, "decline": 0}
    for p in pairs:
        question = p.prompt.messages[-1].content
        kinds[expect[question]] += 1
        assert p.prompt.system == system and p.chosen != p.rejected
        assert p.chosen.rstrip().endswith("?") and find_recommendations(p.chosen) == [], p.chosen
    assert kinds["answer"] >= 40 and kinds["decline"] >= 100, kinds


def test_the_quickstart_mix_weighs_answer_pairs_twice_then_adds_the_hand_written_ones():
    from tunery import quickstart

    lines = [json.dumps(pair(0, input={"messages": [{"role": "user", "content": q}]})) for q in
             (p["question"] for p in quickstart.training_prompts()[:40])]
    expect = [p["expect"] for p in quickstart.training_prompts()[:40]]
    assert "answer" in expect and "decline" in expect
    mix = quickstart.preference_mix("\n".join(lines) + "\n").splitlines()
    bundled = (TRAVEL / "preferences.jsonl").read_text(encoding="utf-8").splitlines()
    answered = [line for line, e in zip(lines, expect, strict=True) if e == "answer"]
    assert mix == lines + answered + bundled
    assert quickstart.preference_mix("\n".join(lines), answer_times=1).splitlines() == lines + bundled
