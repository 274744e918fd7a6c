"""Semantic similarity with sentence embeddings (all-MiniLM-L6-v2, offline): against a reference
answer in each row (``similarity``), against a set of texts in a given style, e.g. the assistant
answers of the training data (``style_similarity``), or against the question itself (``answers``:
is the reply about what was asked?).

Scores are cosine similarities, in practice 0-1 for this model (about 0.75 for close
paraphrases, below 0.2 for unrelated sentences). The pass thresholds of ``similarity`` and
``style_similarity`` are rules of thumb; set them with ``threshold=``.

``answers``' threshold is calibrated. On the bundled travel training conversations, each user
turn paired with its own answer is a positive, paired with every other answer a negative (162
questions, 26,082 mismatched pairs): balanced accuracy peaks at 0.435 there, and 0.43 is within
0.001 of that peak (98.1% of answers pass, 1.3% of other questions' answers do). On the 16
validation conversations, which played no part in choosing it, every answer passes and 0.8% of
mismatched ones do. A test recomputes both. It tells an answer about the question from an answer to another question; it cannot tell a
right answer from a wrong or vague one about the same thing, nor a refusal that stays on topic
(``refuses`` checks that), and a terse answer that never names its subject can fall below it
("Try tagliatelle al ragù and tortellini in broth." scores 0.31 for "What should I eat in
Bologna?").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from tunery.errors import InvalidInput, NotFound, json_kind, json_problem
from tunery.evals.base import (
    EvalResult,
    Evaluator,
    Row,
    RowScore,
    parse_number,
    parse_options,
    reference_key,
    text_of,
)

ANSWERS_THRESHOLD = 0.43  # calibrated on the bundled travel data, see the module docstring


class Similarity(Evaluator):
    kind = "similarity"
    description = ("Cosine similarity of sentence embeddings between the answer and the reference column "
                   "(ref=COLUMN, default ground_truth); passes at threshold (default 0.5).")
    _has_ref_option: ClassVar[bool] = True

    def __init__(self, *, ref: str | None = None, threshold: float = 0.5, name: str | None = None) -> None:
        super().__init__(name)
        self.ref = ref
        self.threshold = threshold
        self._key = ref or "ground_truth"

    @classmethod
    def from_spec(cls, options: str) -> Evaluator:
        _, kw = parse_options(options, allowed=("ref", "threshold"), evaluator=cls.kind)
        threshold = parse_number(kw.get("threshold", "0.5"), option="threshold", evaluator=cls.kind)
        return cls(ref=kw.get("ref"), threshold=threshold, name=f"{cls.kind}:{options}" if options else cls.kind)

    @property
    def required_columns(self) -> tuple[str, ...]:
        return (self._key,)

    @property
    def meta(self) -> dict:
        return {"embedder": "all-MiniLM-L6-v2", "threshold": self.threshold}

    def check_columns(self, rows: Sequence[Row]) -> None:
        self._key = reference_key(rows, self.ref)
        super().check_columns(rows)

    def evaluate(self, rows: Sequence[Row]) -> EvalResult:
        self.check_columns(rows)
        return _cosine_verdicts(self, rows, self._key, "to the reference")


def _cosine_verdicts(evaluator: Similarity | Answers, rows: Sequence[Row], key: str, what: str) -> EvalResult:
    """Per row, the cosine between the answer and the text in column ``key``, passing at the
    evaluator's threshold; a row with no text there is not scored, an empty answer scores 0."""
    from tunery.evals.embeddings import embed

    answers = [text_of(r, "answer") for r in rows]
    refs = [text_of(r, key) for r in rows]
    todo = [i for i, (a, b) in enumerate(zip(answers, refs, strict=True)) if a.strip() and b.strip()]
    vectors = embed([answers[i] for i in todo] + [refs[i] for i in todo])
    sims = dict(zip(todo, (vectors[: len(todo)] * vectors[len(todo):]).sum(axis=1), strict=True))
    per_row = []
    threshold = evaluator.threshold
    for i, (a, b) in enumerate(zip(answers, refs, strict=True)):
        if not b.strip():
            per_row.append(RowScore(None, None, f"nothing in column {key!r}: not scored"))
        elif not a.strip():
            per_row.append(RowScore(0.0, False, "empty answer"))
        else:
            s = float(sims[i])
            per_row.append(RowScore(s, s >= threshold, f"cosine {s:.3f} {what} ({'≥' if s >= threshold else '<'} "
                                                       f"{threshold})"))
    return evaluator.result(per_row)


def load_reference_texts(path: Path) -> list[str]:
    """Texts in the target style from a JSONL file: the assistant messages of chat rows
    (``{"messages": [...]}``), or the ``text``/``answer``/``completion`` field of other rows."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"reference file {path} does not exist", param="evaluator")
    texts: list[str] = []
    from tunery.data.text import read_lines

    for n, line in read_lines(path, param="evaluator"):  # a line that is not UTF-8 is named
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as e:  # RecursionError: nested past Python's limit
            raise InvalidInput(f"{path}, line {n}: not valid JSON: {json_problem(e)}", param="evaluator") from None
        if not isinstance(row, dict):
            raise InvalidInput(f"{path}, line {n}: expected a JSON object, got {json_kind(row)}", param="evaluator")
        if isinstance(row.get("messages"), list):
            texts += [m["content"] for m in row["messages"] if isinstance(m, dict) and m.get("role") == "assistant"
                      and isinstance(m.get("content"), str) and m["content"].strip()]
            continue
        for key in ("text", "answer", "completion"):
            if isinstance(row.get(key), str) and row[key].strip():
                texts.append(row[key])
                break
    if not texts:
        raise InvalidInput(f"{path} holds no reference texts", param="evaluator",
                           hint="use chat JSONL with assistant messages, or rows with a 'text' field")
    return texts


class StyleSimilarity(Evaluator):
    kind = "style_similarity"
    description = ("How close each answer is to a set of texts in the target style, e.g. the training "
                   "data's assistant answers: style_similarity:file=train.jsonl[,agg=max|mean][,threshold=0.5]. "
                   "max = cosine to the nearest reference; mean = average cosine to all.")

    def __init__(self, references: Sequence[str], *, agg: str = "max", threshold: float = 0.5,
                 source: str = "", name: str | None = None) -> None:
        super().__init__(name)
        if agg not in ("max", "mean"):
            raise InvalidInput(f"evaluator 'style_similarity': agg must be max or mean, got {agg!r}", param="evaluator")
        refs = [r for r in references if r.strip()]
        if not refs:
            raise InvalidInput("evaluator 'style_similarity' needs at least one non-empty reference text",
                               param="evaluator")
        self.references = refs
        self.agg = agg
        self.threshold = threshold
        self.source = source
        self._ref_vectors: np.ndarray | None = None

    @classmethod
    def from_spec(cls, options: str) -> Evaluator:
        positional, kw = parse_options(options, allowed=("file", "agg", "threshold"), evaluator=cls.kind)
        file = kw.get("file") or (positional[0] if positional else "")
        if not file:
            raise InvalidInput("evaluator 'style_similarity' needs a reference file",
                               param="evaluator", hint="style_similarity:file=train.jsonl")
        threshold = parse_number(kw.get("threshold", "0.5"), option="threshold", evaluator=cls.kind)
        # the label names the file, not its whole path, so tables and charts stay readable
        label = ",".join([Path(file).name] + [f"{k}={v}" for k, v in kw.items() if k != "file"])
        return cls(load_reference_texts(Path(file)), agg=kw.get("agg", "max"), threshold=threshold, source=file,
                   name=f"{cls.kind}:{label}")

    @property
    def meta(self) -> dict:
        return {"embedder": "all-MiniLM-L6-v2", "references": len(self.references), "source": self.source,
                "agg": self.agg, "threshold": self.threshold}

    def evaluate(self, rows: Sequence[Row]) -> EvalResult:
        from tunery.evals.embeddings import embed

        if self._ref_vectors is None:
            self._ref_vectors = embed(self.references)
        answers = [text_of(r, "answer") for r in rows]
        todo = [i for i, a in enumerate(answers) if a.strip()]
        sims = embed([answers[i] for i in todo]) @ self._ref_vectors.T if todo else np.zeros((0, 0))
        position = {i: k for k, i in enumerate(todo)}
        per_row = []
        for i in range(len(answers)):
            if i not in position:
                per_row.append(RowScore(0.0, False, "empty answer"))
                continue
            row_sims = sims[position[i]]
            s = float(row_sims.max() if self.agg == "max" else row_sims.mean())
            nearest = int(row_sims.argmax())
            example = self.references[nearest][:50] + ("…" if len(self.references[nearest]) > 50 else "")
            why = (f"cosine {s:.3f} to the nearest of {len(self.references)} references ({example!r})"
                   if self.agg == "max" else f"mean cosine {s:.3f} to {len(self.references)} references")
            per_row.append(RowScore(s, s >= self.threshold, why))
        return self.result(per_row)


class Answers(Evaluator):
    kind = "answers"
    description = ("Relevance (embedding similarity, all-MiniLM-L6-v2): cosine between the question and the answer; "
                   f"passes at threshold (default {ANSWERS_THRESHOLD}, calibrated on travel Q&A pairs). "
                   "answers:threshold=0.5.")

    def __init__(self, *, threshold: float = ANSWERS_THRESHOLD, name: str | None = None) -> None:
        super().__init__(name)
        self.threshold = threshold

    @classmethod
    def from_spec(cls, options: str) -> Evaluator:
        _, kw = parse_options(options, allowed=("threshold",), evaluator=cls.kind)
        threshold = parse_number(kw.get("threshold", str(ANSWERS_THRESHOLD)), option="threshold", evaluator=cls.kind)
        return cls(threshold=threshold, name=f"{cls.kind}:{options}" if options else cls.kind)

    @property
    def required_columns(self) -> tuple[str, ...]:
        return ("question",)

    @property
    def meta(self) -> dict:
        return {"embedder": "all-MiniLM-L6-v2", "threshold": self.threshold}

    @property
    def hint(self) -> str:
        return f"pass = the answer is about the question (cosine ≥ {self.threshold})"

    def evaluate(self, rows: Sequence[Row]) -> EvalResult:
        return _cosine_verdicts(self, rows, "question", "to the question")
