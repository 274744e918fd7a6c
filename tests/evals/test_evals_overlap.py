from __future__ import annotations

import pytest

from tunery.errors import InvalidInput
from tunery.evals import Accuracy, Bleu, ExactMatch, RougeL, TokenF1, parse_evaluator


def rows(*pairs, key="ground_truth"):
    return [{"question": "q", "answer": a, key: r} for a, r in pairs]


def test_accuracy_is_case_insensitive_exact_match():
    res = Accuracy().evaluate(rows(("Positive", "positive"), (" NEGATIVE\n", "negative"), ("neutral", "negative")))
    assert [r.passed for r in res.per_row] == [True, True, False]
    assert res.aggregate["mean"] == pytest.approx(2 / 3)
    assert res.per_row[2].reason.startswith("Incorrect")


def test_exact_match_normalises_but_token_f1_gives_partial_credit():
    data = rows(("The Eiffel Tower.", "eiffel tower"), ("Eiffel", "eiffel tower"), ("", ""))
    em = ExactMatch().evaluate(data)
    assert [r.score for r in em.per_row] == [1.0, 0.0, 1.0]
    f1 = TokenF1().evaluate(data)
    assert [r.score for r in f1.per_row] == pytest.approx([1.0, 2 / 3, 1.0])
    assert [r.passed for r in f1.per_row] == [True, True, True]  # default threshold 0.5
    assert [r.passed for r in TokenF1(threshold=0.9).evaluate(data).per_row] == [True, False, True]


def test_reference_column_is_found_or_named():
    assert ExactMatch().evaluate(rows(("a", "a"), key="groundtruth")).aggregate["mean"] == 1.0
    assert ExactMatch(ref="label").evaluate(rows(("a", "b"), key="label")).aggregate["mean"] == 0.0
    with pytest.raises(InvalidInput, match="row 1 has no 'ground_truth' column") as e:
        ExactMatch().evaluate([{"answer": "a"}])
    assert "exact_match:ref=COLUMN" in str(e.value)


def test_bleu_reports_sentence_scores_and_corpus_bleu():
    data = rows(("The dog bit the man.", "The dog bit the man."), ("It wasn't surprising.", "It was not unexpected."))
    res = Bleu().evaluate(data)
    assert [r.score for r in res.per_row] == pytest.approx([100.0, 14.794015674776452])
    assert res.per_row[0].passed is None  # no threshold, no verdict
    assert res.aggregate["corpus_bleu"] > 0
    assert Bleu.scale == (0.0, 100.0)


def test_rouge_l_with_threshold_from_spec():
    ev = parse_evaluator("rouge_l:threshold=0.6")
    res = ev.evaluate(rows(("the cat sat on the mat", "the cat is on the mat"), ("dogs", "cats")))
    assert [r.passed for r in res.per_row] == [True, False]
    assert ev.name == "rouge_l:threshold=0.6"
    assert isinstance(ev, RougeL)


@pytest.mark.parametrize("spec", ["token_f1:threshold=high", "exact_match:colour=red", "bleu:oops"])
def test_bad_options_are_named(spec):
    with pytest.raises(InvalidInput, match="evaluator"):
        parse_evaluator(spec)
