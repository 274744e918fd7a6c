"""The bundled travel dataset teaches what its system message asks: decline only where a specific
hotel, airline, rental-car company or restaurant is asked for, answer everything else, end with a
question. Its held-out questions are labelled by intent and share no prompt with the training data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tunery.data.validate import validate_file
from tunery.evals import EndsWithQuestion, find_recommendations, find_refusals
from tunery.evals.base import sentences
from tunery.quickstart import QUESTIONS, TRAIN, VALID

INTENTS = TRAIN.parent / "intents.jsonl"
EXPECT = ("answer", "decline")


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _turns(path: Path) -> list[tuple[str, str]]:
    """(user prompt, assistant answer) for every assistant turn, weight 0 ones included."""
    out = []
    for row in _rows(path):
        messages = row["messages"]
        out += [(messages[k - 1]["content"], m["content"]) for k, m in enumerate(messages) if m["role"] == "assistant"]
    return out


def _intents() -> dict[str, str]:
    rows = _rows(INTENTS)
    labels = {r["prompt"]: r["expect"] for r in rows}
    assert len(labels) == len(rows), "a prompt is labelled twice"
    return labels


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-zà-ÿ']+", text.lower()))


def test_sizes_and_validity():
    train, valid = validate_file(TRAIN, purpose="training"), validate_file(VALID, purpose="validation")
    assert train.ok and valid.ok and not train.warnings and not valid.warnings
    assert len(train.examples) >= 120 and 15 <= len(valid.examples) <= 20


def test_one_system_message_the_exercises_own(shared_data):
    exercise = _rows(shared_data / "travel-finetune-hotel.jsonl")[0]["messages"][0]["content"]
    systems = {row["messages"][0]["content"] for path in (TRAIN, VALID) for row in _rows(path)}
    assert systems == {exercise}


def test_every_prompt_is_labelled_and_every_label_is_used():
    labels = _intents()
    prompts = [p for path in (TRAIN, VALID) for p, _ in _turns(path)]
    assert sorted(prompts) == sorted(labels) and set(labels.values()) == set(EXPECT)
    # more help than refusal: a model learns its habits from the proportions
    assert list(labels.values()).count("answer") >= 1.5 * list(labels.values()).count("decline")


@pytest.mark.parametrize("path", [TRAIN, VALID], ids=lambda p: p.name)
def test_answers_refuse_only_where_a_forbidden_recommendation_is_asked_for(path):
    labels = _intents()
    unprompted = [(p, a) for p, a in _turns(path) if labels[p] == "answer" and find_refusals(a)]
    assert not unprompted, f"refuses a question it should answer: {unprompted[0]}"
    silent = [(p, a) for p, a in _turns(path) if labels[p] == "decline" and not find_refusals(a)]
    assert not silent, f"does not decline a forbidden recommendation: {silent[0]}"


@pytest.mark.parametrize("path", [TRAIN, VALID], ids=lambda p: p.name)
def test_answers_are_brief_end_with_a_question_and_name_no_business(path):
    ends = EndsWithQuestion()
    for _, answer in _turns(path):
        assert 2 <= len(sentences(answer)) <= 4 and len(answer.split()) <= 75, answer
        assert ends.score_row({"answer": answer}).passed, answer
        assert find_recommendations(answer) == [], answer


def test_declines_are_phrased_in_varied_ways():
    labels = _intents()
    openers = {" ".join(a.split()[:3]) for p, a in _turns(TRAIN) if labels[p] == "decline"}
    assert len(openers) >= 12  # not one formula the model can learn as a tic
    first_sentences = [sentences(a)[0] for p, a in _turns(TRAIN) if labels[p] == "decline"]
    assert sum(s.startswith("I can't recommend specific") for s in first_sentences) <= len(first_sentences) / 5


def test_held_out_questions_are_labelled_and_start_with_the_exercises(shared_data):
    rows = _rows(QUESTIONS)
    assert all(set(r) == {"question", "expect"} and r["expect"] in EXPECT for r in rows)
    counts = {e: sum(r["expect"] == e for r in rows) for e in EXPECT}
    assert counts["answer"] >= 30 and counts["decline"] >= 30
    # the exercise's five test questions, as the reference data's README lists them
    readme = (shared_data / "README.md").read_text(encoding="utf-8")
    exercise = re.findall(r"^\d\. (.+)$", readme, flags=re.MULTILINE)
    assert len(exercise) == 5
    assert [r["question"] for r in rows[:5]] == exercise
    # where to stay is a hotel question; dishes, weather and transport are questions to answer
    assert [r["expect"] for r in rows[:5]] == ["decline", "decline", "answer", "answer", "answer"]
    # both kinds early on, so `tunery quickstart --questions 10` still measures both
    assert {r["expect"] for r in rows[5:7]} == set(EXPECT)


def test_no_held_out_question_is_copied_from_the_training_data():
    prompts = list(_intents())
    for row in _rows(QUESTIONS):
        q = _words(row["question"])
        for p in prompts:
            overlap = len(q & _words(p)) / len(q | _words(p))
            assert overlap < 0.6, f"{row['question']!r} is too close to the training prompt {p!r}"


def test_rome_stays_out_of_training_and_validation():
    # the exercise's questions are about Rome: the fine-tune must not have seen its answers
    for path in (TRAIN, VALID):
        assert "rome" not in _words(path.read_text(encoding="utf-8"))
