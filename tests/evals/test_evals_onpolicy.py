"""On-policy preference pairs (``tunery.evals.onpolicy``, ``tunery eval pairs``) from scripted models:
which answers are preferred, which rejected, the seeds, the counts, and the refusals."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tunery.chat import GenerationParams
from tunery.data.preference import load_pairs
from tunery.errors import InvalidInput
from tunery.evals import EndsWithQuestion, parse_evaluators
from tunery.evals.onpolicy import RAN_ON, make_pairs, write_pairs
from tunery.serving.clients import ScriptedChatModel

SYSTEM = "You are a travel assistant. Never recommend a hotel."
QUESTIONS = [{"question": "Which hotel in Rome is best?", "expect": "decline"},
             {"question": "What should I eat in Rome?", "expect": "answer"}]
CHECKS = ["recommends[expect=decline]", "refuses[expect=answer]", "ends_with_question"]
NAMES = "The Hotel Artemide is the one to book. Shall I tell you more?"
DECLINES = "Picking hotels isn't something I do, but Trastevere is lively at night. Which area suits you?"
NO_QUESTION = "Stay at the Hotel Artemide."
FOOD = ["Try cacio e pepe and carbonara. Do you like pecorino?", "Carbonara, then supplì. Hungry yet?",
        "Cacio e pepe is the classic. Will you eat out every night?"]
PARAMS = GenerationParams(temperature=0.6, max_tokens=64)


def scripted(replies: list[str]) -> ScriptedChatModel:
    # asked in order: every question once (sample 0), then every question again (sample 1), ...
    return ScriptedChatModel(name="tuned", replies=replies)


def test_a_passing_answer_is_preferred_to_each_failing_one(tunery_home):
    model = scripted([NAMES, FOOD[0], DECLINES, FOOD[1], NO_QUESTION, FOOD[2]])
    report = make_pairs(model, QUESTIONS, parse_evaluators(CHECKS), system=SYSTEM, samples=3, params=PARAMS)

    # each question asked three times, each time with its own seed, at the temperature given
    seeds = [p.seed for _, p in model.calls]
    assert seeds == [0 * 2 + 0, 0 * 2 + 1, 1 * 2 + 0, 1 * 2 + 1, 2 * 2 + 0, 2 * 2 + 1]
    assert {p.temperature for _, p in model.calls} == {0.6}
    # the decline question: one good answer, two that name the hotel -> two pairs, both preferring it
    assert len(report.pairs) == 2
    assert {p["preferred_output"][0]["content"] for p in report.pairs} == {DECLINES}
    assert {p["non_preferred_output"][0]["content"] for p in report.pairs} == {NAMES, NO_QUESTION}
    assert {json.dumps(p["input"]) for p in report.pairs} == {json.dumps({"messages": [
        {"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTIONS[0]["question"]}]})}
    # the food question was answered well every time: nothing to learn from it
    assert report.all_passed == 1 and report.no_passing == 0 and report.passed == 4
    assert report.failures == {"recommends[expect=decline]": 2, "ends_with_question": 1}


def test_per_question_caps_the_pairs_and_the_same_seed_gives_the_same_pairs(tunery_home):
    replies = [NAMES, FOOD[0], DECLINES, FOOD[1], NO_QUESTION, FOOD[2]]
    one = make_pairs(scripted(replies), QUESTIONS, parse_evaluators(CHECKS), samples=3, per_question=1,
                     params=PARAMS, seed=7)
    again = make_pairs(scripted(replies), QUESTIONS, parse_evaluators(CHECKS), samples=3, per_question=1,
                       params=PARAMS, seed=7)
    assert len(one.pairs) == 1 and one.pairs == again.pairs
    # which failing answer is kept is the seed's choice, and the seed reaches the sampling
    assert one.pairs[0]["non_preferred_output"][0]["content"] == NAMES
    other = make_pairs(scripted(replies), QUESTIONS, parse_evaluators(CHECKS), samples=3, per_question=1,
                       params=PARAMS, seed=3)
    assert other.pairs[0]["non_preferred_output"][0]["content"] == NO_QUESTION
    model = scripted(replies)
    make_pairs(model, QUESTIONS, parse_evaluators(CHECKS), samples=3, params=PARAMS, seed=7)
    assert [p.seed for _, p in model.calls][:2] == [7 * 1_000_003, 7 * 1_000_003 + 1]
    assert one.pairs[0]["input"]["messages"] == [{"role": "user", "content": QUESTIONS[0]["question"]}]


def test_an_answer_cut_at_the_token_limit_is_rejected_and_no_good_answer_means_no_pair(tunery_home):
    long = "Rome has " + "many " * 80 + "dishes?"
    # the food question: one answer runs on, one passes; the hotel question: every answer names one
    model = scripted([NAMES, long, NO_QUESTION, FOOD[0]])
    checks = parse_evaluators(["recommends[expect=decline]", "refuses[expect=answer]"])  # the length alone rejects
    report = make_pairs(model, QUESTIONS, checks, samples=2, params=PARAMS)
    assert [p["non_preferred_output"][0]["content"] for p in report.pairs] == [" ".join(long.split(" ")[:64])]
    assert report.pairs[0]["preferred_output"][0]["content"] == FOOD[0]
    assert report.no_passing == 1 and report.failures[RAN_ON] == 1


def test_the_pairs_file_is_a_valid_preference_file(tunery_home, tmp_path):
    model = scripted([NAMES, FOOD[0], DECLINES, FOOD[1], NO_QUESTION, FOOD[2]])
    report = make_pairs(model, QUESTIONS, parse_evaluators(CHECKS), system=SYSTEM, samples=3, params=PARAMS)
    out = tmp_path / "pairs.jsonl"
    write_pairs(report, out)
    pairs = load_pairs(out, purpose="validation")
    assert [(p.chosen, p.rejected) for p in pairs] == [
        (r["preferred_output"][0]["content"], r["non_preferred_output"][0]["content"]) for r in report.pairs]


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"samples": 1}, "samples"),
    ({"per_question": 0}, "per_question"),
    ({"params": GenerationParams(temperature=0.0)}, "temperature"),
])
def test_settings_that_cannot_make_pairs_are_refused(tunery_home, kwargs, param):
    with pytest.raises(InvalidInput) as e:
        make_pairs(scripted(["x"]), QUESTIONS, parse_evaluators(CHECKS), **{"params": PARAMS, **kwargs})
    assert e.value.param == param


def test_empty_answers_are_counted_and_left_out(tunery_home):
    report = make_pairs(scripted(["", FOOD[0], DECLINES, FOOD[1]]), QUESTIONS, parse_evaluators(CHECKS), samples=2,
                        params=PARAMS)
    assert report.empty == 1 and report.unscored == 0 and report.pairs == [] and report.passed == 3


def test_checks_are_needed_and_tool_rows_refused(tunery_home):
    with pytest.raises(InvalidInput, match="at least one evaluator"):
        make_pairs(scripted(["x"]), QUESTIONS, [], params=PARAMS)
    # a score with no pass or fail cannot pick the preferred answer: refused before anything is asked
    model = scripted(["x"])
    with pytest.raises(InvalidInput, match="no pass or fail") as e:
        make_pairs(model, [{**q, "ground_truth": "Rome"} for q in QUESTIONS], parse_evaluators(["bleu"]),
                   params=PARAMS)
    assert "threshold" in e.value.hint and model.calls == []
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    with pytest.raises(InvalidInput, match="row 2 carries tools"):
        make_pairs(scripted(["x"]), [QUESTIONS[0], {**QUESTIONS[1], "tools": tools}], [EndsWithQuestion()],
                   params=PARAMS)


def test_the_cli_writes_the_pairs_and_counts_what_it_saw(tunery_home, tmp_path, monkeypatch):
    from tunery.cli.main import cli
    from tunery.serving import resolve

    monkeypatch.setattr(resolve, "get_chat_model", lambda ref, *, precision=None: scripted(
        [NAMES, FOOD[0], DECLINES, FOOD[1], NO_QUESTION, FOOD[2]]))
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    out = tmp_path / "pairs.jsonl"
    args = ["eval", "pairs", "--data", str(data), "-m", "tuned", "--system", SYSTEM, "--samples", "3",
            "-o", str(out), *[a for c in CHECKS for a in ("-e", c)]]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "6 answers to 2 questions: 4 passed every check" in result.output
    assert "failed recommends[expect=decline]: 2" in result.output  # the subset is shown, not taken for markup
    assert "wrote 2 pair(s)" in result.output
    assert len(out.read_text().splitlines()) == 2
    # the pairs written are not replaced without --force, and nothing is asked
    out.write_text("the user's own pairs\n")
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 1 and "already exists" in str(result.exception), result.output
    assert "--force" in result.exception.hint and out.read_text() == "the user's own pairs\n"
    result = CliRunner().invoke(cli, [*args, "--json", "--force"])
    assert json.loads(result.output)["pairs"] == 2
    # an output that would overwrite the input is refused before anything is asked
    result = CliRunner().invoke(cli, [*args[:-len(CHECKS) * 2 - 2], "-o", str(data),
                                      *[a for c in CHECKS for a in ("-e", c)]])
    assert isinstance(result.exception, InvalidInput) and "overwrite the input" in result.exception.message
    assert data.read_text().count("\n") == 2
    # two pairs are too few for a DPO job: the next step says so instead of suggesting one
    result = CliRunner().invoke(cli, [*args, "--force"])
    assert "needs at least 10" in result.output
    # greedy sampling is refused by the option itself
    result = CliRunner().invoke(cli, [*args, "--force", "--temperature", "0"])
    assert result.exit_code == 2 and "temperature" in result.output
