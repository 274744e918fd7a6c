"""Model-graded evaluators with a scripted judge: the prompt, the parsing, the record of the judge."""

from __future__ import annotations

import pytest

from tunery.errors import InvalidInput
from tunery.evals import Judge, parse_evaluator, parse_rating
from tunery.evals.judge import METRICS, rubric
from tunery.serving.clients import ScriptedChatModel


@pytest.mark.parametrize(("reply", "rating"), [
    ("4", 4), (" 5\n", 5), ("Rating: 2", 2), ("**Score:** 3", 3), ("I'd rate it 4/5.", 4),
    ("4 out of 5", 4), ("The answer is fine. 3", 3), ("no idea", None), ("", None), ("7", None),
    ("Step 1. It is 10 words. Rating: 5", 5), ("The answer is 1.", 1), ("3.5", None),
])
def test_parse_rating(reply, rating):
    assert parse_rating(reply) == rating


def test_every_rubric_exists_and_uses_known_placeholders():
    for metric, columns in METRICS.items():
        text = rubric(metric)
        assert "{{answer}}" in text and "1 to 5" in text
        for col in columns:
            assert "{{" + col + "}}" in text


def test_judge_scores_rows_and_records_the_judge():
    judge_model = ScriptedChatModel(name="big-judge", replies=["4", "Rating: 2", "I cannot say"])
    ev = Judge("coherence", judge_model)
    rows = [{"question": "Where to stay in Rome?", "answer": "Trastevere {is} lovely. What's your budget?"},
            {"question": "q2", "answer": "asdf qwer"},
            {"question": "q3", "answer": "Hmm."},
            {"question": "q4", "answer": "  "}]
    res = ev.evaluate(rows)
    assert [r.score for r in res.per_row] == [4.0, 2.0, None, 1.0]
    assert [r.passed for r in res.per_row] == [True, False, None, False]
    assert "big-judge" in res.per_row[0].reason and "no 1-5 rating" in res.per_row[2].reason
    assert "without asking" in res.per_row[3].reason  # empty answers are not sent to the judge
    assert res.meta["judge"] == "big-judge"
    assert res.aggregate["n"] == 3 and res.aggregate["unscored"] == 1
    assert res.aggregate["mean"] == pytest.approx(7 / 3)
    # the prompt is the rubric, filled in, braces in the answer left alone; judged greedily
    (messages, params), *_ = judge_model.calls
    prompt = messages[-1].content
    assert "COHERENCE" in prompt and "Where to stay in Rome?" in prompt and "Trastevere {is} lovely" in prompt
    assert "{{" not in prompt
    assert params.temperature == 0.0
    assert len(judge_model.calls) == 3


def test_judge_spec_resolves_the_model(monkeypatch):
    from tunery.serving import resolve

    made = {}

    def fake(ref):
        made["ref"] = ref
        return ScriptedChatModel(name=ref, replies=["5"])

    monkeypatch.setattr(resolve, "get_chat_model", fake)
    ev = parse_evaluator("judge:fluency@judge-model@http://127.0.0.1:9/v1,threshold=4")
    assert made["ref"] == "judge-model@http://127.0.0.1:9/v1"
    assert ev.threshold == 4 and ev.metric == "fluency"
    assert ev.name == "judge:fluency@judge-model@http://127.0.0.1:9/v1,threshold=4"
    assert ev.evaluate([{"answer": "Fine prose."}]).per_row[0].passed is True
    for bad in ("judge:coherence", "judge:wit@m", "judge:coherence@m,temperature=1"):
        with pytest.raises(InvalidInput):
            parse_evaluator(bad)


def test_an_unknown_local_judge_is_named_when_parsed(tiny_model):
    """Not after every answer is generated (nor never, when every answer is empty and rated 1
    without asking it): a deployment's name or a model's is known, nothing is loaded."""
    from tunery.errors import NotFound
    from tunery.serving import deployments

    with pytest.raises(NotFound, match="unknown model 'no-such-judge'"):
        parse_evaluator("judge:coherence@no-such-judge")
    assert parse_evaluator("judge:coherence@tiny-random").model.name == "tiny-random"
    deployments.create("the-judge", "tiny-random")
    assert parse_evaluator("judge:coherence@the-judge,threshold=2").threshold == 2


def test_judge_needs_its_columns():
    ev = Judge("groundedness", ScriptedChatModel(replies=["5"]))
    with pytest.raises(InvalidInput, match="no 'context' column"):
        ev.evaluate([{"question": "q", "answer": "a"}])
    sim = Judge("similarity", ScriptedChatModel(replies=["3"]))
    res = sim.evaluate([{"question": "q", "answer": "a", "expected": "b"}])  # any reference column name
    assert res.per_row[0].score == 3.0
    assert "Reference answer:\nb" in sim.model.calls[0][0][-1].content


@pytest.mark.slow
def test_smollm2_as_judge_runs_end_to_end(smollm2):
    # SmolLM2-135M is too small to judge well (see tunery.evals.judge); this proves the rubric
    # fits its context and the reply is read, whatever it says
    ev = parse_evaluator("judge:fluency@smollm2-135m-instruct")
    res = ev.evaluate([{"answer": "Trastevere is charming and close to the centre. What is your budget?"}])
    row = res.per_row[0]
    assert "smollm2-135m-instruct" in row.reason
    assert row.score is None or 1.0 <= row.score <= 5.0
    assert res.meta["judge"] == "smollm2-135m-instruct"
