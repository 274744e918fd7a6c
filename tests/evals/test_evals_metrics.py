"""Text-overlap algorithms against values computed with sacrebleu 2.6.0 and rouge-score 0.1.2."""

from __future__ import annotations

import pytest

from tunery.evals.metrics import (
    corpus_bleu,
    normalize_answer,
    rouge_l,
    sentence_bleu,
    token_f1,
    tokenize_13a,
)

# (hypothesis, references, sacrebleu.sentence_bleu(...).score, RougeScorer(["rougeL"]) F on refs[0])
CASES = [
    ("The dog bit the man.", ["The dog bit the man."], 100.00000000000004, 1.0),
    ("It wasn't surprising.", ["It was not unexpected."], 14.794015674776452, 0.25),
    ("The man had just bitten him.", ["The man bit him first."], 15.619699684601283, 0.5454545454545454),
    ("the cat sat on the mat", ["the cat is on the mat", "there is a cat on the mat"], 37.99178428257963,
     0.8333333333333334),
    ("", ["nothing here"], 0.0, 0.0),
    ("hello", ["hello"], 100.00000000000004, 1.0),
    ("Café déjà vu — très bien!", ["Café déjà vu, très bien."], 30.739407647563215, 1.0),
    ("Numbers 3.14 and 1,000 - ok-ish", ["Numbers 3.14 and 1,000 ok"], 50.81327481546149, 0.9333333333333333),
    ("A B C D E F", ["A B C D E F G H I J"], 51.341711903259224, 0.7499999999999999),
    ("Oh la la! You simply must twirl around the Eiffel Tower.",
     ["Oh la la! Twirl around the Eiffel Tower and snap a selfie!"], 35.81345475522872, 0.6956521739130435),
]


@pytest.mark.parametrize(("hyp", "refs", "bleu", "rouge"), CASES)
def test_sentence_bleu_and_rouge_l_match_the_reference_packages(hyp, refs, bleu, rouge):
    assert sentence_bleu(hyp, refs) == pytest.approx(bleu, abs=1e-9)
    assert rouge_l(hyp, refs[0]).fmeasure == pytest.approx(rouge, abs=1e-12)


def test_corpus_bleu_matches_sacrebleus_documented_example():
    # the example in sacrebleu's README: BLEU = 48.53
    hyps = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
    refs = [["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
            ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."]]
    assert corpus_bleu(hyps, refs) == pytest.approx(48.530827009929865, abs=1e-9)
    assert corpus_bleu([c[0] for c in CASES[:4]], [[c[1][0] for c in CASES[:4]]]) == pytest.approx(
        42.23809543984774, abs=1e-9)
    assert corpus_bleu([], [[]]) == 0.0


def test_13a_tokenizer_splits_punctuation_but_not_numbers():
    assert tokenize_13a("Hello, world! It costs 1,000.50 €-ish.") == [
        "Hello", ",", "world", "!", "It", "costs", "1,000.50", "€-ish", "."]
    assert tokenize_13a("a &amp; b") == ["a", "&", "b"]


def test_rouge_l_precision_recall_and_unicode_words():
    r = rouge_l("the cat sat", "the cat sat on the mat")
    assert (r.precision, r.recall) == (1.0, 0.5)
    # rouge-score would drop the accented letters; here they are words like any other
    assert rouge_l("naïve café", "naive cafe").fmeasure == 0.0
    assert rouge_l("東京 大阪", "東京 大阪").fmeasure == 1.0
    assert rouge_l("   ", "text").fmeasure == 0.0


def test_normalize_answer_follows_squad_with_unicode_punctuation():
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert normalize_answer("“Rome”") == "rome"
    assert normalize_answer("An apple, a day") == "apple day"


@pytest.mark.parametrize(("pred", "ref", "f1"), [
    ("the cat sat on the mat", "a cat sat on a mat", 1.0),
    ("cat sat", "cat sat on mat", 2 * (1.0 * 0.5) / 1.5),
    ("dog", "cat", 0.0),
    ("", "", 1.0),        # both empty: agreement (SQuAD v2)
    ("", "cat", 0.0),
    ("cat cat cat", "cat", 2 * (1 / 3 * 1.0) / (1 / 3 + 1.0)),  # repeated words count once per match
])
def test_token_f1_known_values(pred, ref, f1):
    assert token_f1(pred, ref) == pytest.approx(f1)
