"""Evaluators that compare an answer with a reference answer in the row: classification accuracy,
exact match, token F1, BLEU and ROUGE-L.

The reference column is ``ground_truth`` (or ``groundtruth``, ``reference``, ``expected``,
whichever the data has), or the one named with ``ref=COLUMN``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

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
from tunery.evals.metrics import corpus_bleu, normalize_answer, rouge_l, sentence_bleu, token_f1


def _clip(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


class ReferenceEvaluator(Evaluator):
    """Shared plumbing: the reference column, an optional pass threshold, spec parsing."""

    _has_ref_option: ClassVar[bool] = True
    default_threshold: ClassVar[float | None] = None

    def __init__(self, *, ref: str | None = None, threshold: float | None = None, name: str | None = None) -> None:
        super().__init__(name)
        self.ref = ref
        self.threshold = self.default_threshold if threshold is None else threshold
        self._key = ref or "ground_truth"

    @property
    def required_columns(self) -> tuple[str, ...]:
        return (self._key,)

    @classmethod
    def from_spec(cls, options: str) -> Evaluator:
        allowed = ("ref", "threshold")
        positional, kw = parse_options(options, allowed=allowed, evaluator=cls.kind)
        if positional:
            from tunery.errors import InvalidInput

            raise InvalidInput(f"evaluator {cls.kind!r}: unexpected option {positional[0]!r}", param="evaluator",
                               hint=f"use key=value with keys {', '.join(allowed)}")
        threshold = parse_number(kw["threshold"], option="threshold", evaluator=cls.kind) if "threshold" in kw else None
        return cls(ref=kw.get("ref"), threshold=threshold,
                   name=f"{cls.kind}:{options}" if options else cls.kind)

    def check_columns(self, rows: Sequence[Row]) -> None:
        self._key = reference_key(rows, self.ref)
        super().check_columns(rows)

    def evaluate(self, rows: Sequence[Row]) -> EvalResult:
        self.check_columns(rows)
        return self.result([self.score_pair(text_of(r, "answer"), text_of(r, self._key)) for r in rows])

    def score_row(self, row: Row) -> RowScore:
        return self.score_pair(text_of(row, "answer"), text_of(row, reference_key([row], self.ref)))

    def score_pair(self, answer: str, reference: str) -> RowScore:
        raise NotImplementedError

    def _verdict(self, score: float) -> bool | None:
        return None if self.threshold is None else score >= self.threshold


class Accuracy(ReferenceEvaluator):
    kind = "accuracy"
    binary = True
    description = ("Classification accuracy: the answer equals the label, ignoring case and surrounding "
                   "whitespace (Prompt flow's classification sample). Score 1 or 0.")

    def score_pair(self, answer: str, reference: str) -> RowScore:
        ok = answer.strip().lower() == reference.strip().lower()
        return RowScore(float(ok), ok, f"{'Correct' if ok else 'Incorrect'}: {_clip(answer)!r} vs label {_clip(reference)!r}")


class ExactMatch(ReferenceEvaluator):
    kind = "exact_match"
    binary = True
    description = ("Exact match after SQuAD normalisation (case, punctuation, articles and extra spaces "
                   "ignored). Score 1 or 0.")

    def score_pair(self, answer: str, reference: str) -> RowScore:
        a, r = normalize_answer(answer), normalize_answer(reference)
        ok = a == r
        why = "matches the reference" if ok else f"normalised answer {_clip(a)!r} differs from {_clip(r)!r}"
        return RowScore(float(ok), ok, why)


class TokenF1(ReferenceEvaluator):
    kind = "token_f1"
    description = ("SQuAD token F1 between the answer and the reference (0-1). Passes at threshold=... "
                   "when given, default 0.5.")
    default_threshold = 0.5

    def score_pair(self, answer: str, reference: str) -> RowScore:
        f1 = token_f1(answer, reference)
        return RowScore(f1, self._verdict(f1), f"token F1 {f1:.3f} against the reference")


class Bleu(ReferenceEvaluator):
    kind = "bleu"
    description = ("Sentence BLEU (0-100) as sacrebleu computes it (13a tokens, exp smoothing); the "
                   "aggregate also reports corpus BLEU. Passes at threshold=... when given.")
    scale = (0.0, 100.0)

    def score_pair(self, answer: str, reference: str) -> RowScore:
        score = sentence_bleu(answer, [reference])
        return RowScore(score, self._verdict(score), f"sentence BLEU {score:.1f}")

    def evaluate(self, rows: Sequence[Row]) -> EvalResult:
        result = super().evaluate(rows)
        # corpus BLEU is the standard figure; the mean of sentence BLEU is kept for the chart
        result.aggregate["corpus_bleu"] = corpus_bleu([text_of(r, "answer") for r in rows],
                                                      [[text_of(r, self._key) for r in rows]])
        return result


class RougeL(ReferenceEvaluator):
    kind = "rouge_l"
    description = ("ROUGE-L F-measure (0-1) as Google's rouge-score computes it without stemming; "
                   "passes at threshold=... when given.")

    def score_pair(self, answer: str, reference: str) -> RowScore:
        r = rouge_l(answer, reference)
        return RowScore(r.fmeasure, self._verdict(r.fmeasure),
                        f"ROUGE-L F {r.fmeasure:.3f} (precision {r.precision:.3f}, recall {r.recall:.3f})")


OVERLAP_EVALUATORS: tuple[type[ReferenceEvaluator], ...] = (Accuracy, ExactMatch, TokenF1, Bleu, RougeL)
