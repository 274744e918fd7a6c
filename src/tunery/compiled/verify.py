"""Check that an export (or the compiled copy the fast path serves) behaves like its source: the same prompts through both, then greedy-token
agreement, teacher-forced top-1 agreement, and the loss (perplexity) on a few chat texts.

The report says what was measured and whether each figure is within the format's tolerance
(``tunery.export.formats.TOLERANCES``); the exporter refuses to finish an export that fails."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tunery.chat_template import IGNORE, encode_all, prompt_ids
from tunery.compiled.scorers import Scorer

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Tolerance:
    """What "agrees with the source" means for one quantization.

    ``min_greedy``: fraction of greedy tokens (position by position, first N) that match;
    ``min_top1``: fraction of teacher-forced positions whose most likely next token matches;
    ``max_loss_delta``: relative change of the mean token loss, ``|export - source| / source``.
    """

    min_greedy: float
    min_top1: float
    max_loss_delta: float


_SYSTEM = "You are a friendly travel assistant. You help people plan trips."

DEFAULT_PROMPTS: list[Messages] = [
    [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": "What is the best time of year to visit Rome?"}],
    [{"role": "user", "content": "Suggest three things to do in Lisbon on a rainy day."}],
    [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": "How do I get around Kyoto without a car?"}],
]
"""Prompts whose greedy answers are compared (built in: exports must not depend on shared data)."""

DEFAULT_TEXTS: list[Messages] = [
    [{"role": "system", "content": _SYSTEM},
     {"role": "user", "content": "What's a must-see in Paris?"},
     {"role": "assistant", "content": "The Eiffel Tower at sunset, then a walk along the Seine to Notre-Dame. "
                                      "Would you like tips for the Louvre too?"}],
    [{"role": "user", "content": "Is spring a good time to visit Japan?"},
     {"role": "assistant", "content": "Yes! Late March to early April brings the cherry blossoms, mild weather "
                                      "and lively festivals, so book trains and rooms early."}],
    [{"role": "system", "content": _SYSTEM},
     {"role": "user", "content": "What should I pack for a week in Iceland in October?"},
     {"role": "assistant", "content": "Warm layers, a waterproof jacket, sturdy boots, a hat and gloves. The "
                                      "weather changes fast, so plan flexible days."}],
]
"""Conversations whose trained tokens (as the trainer defines them) the loss is measured on."""


@dataclass
class VerifyReport:
    format: str
    quantize: str
    prompts: int
    greedy_tokens: int
    greedy_agreement: float
    top1_agreement: float
    source_loss: float
    export_loss: float
    loss_delta: float  # relative: (export - source) / source
    kl: float  # mean KL(source || export) per scored token, nats
    scored_tokens: int
    tolerance: dict[str, float]
    passed: bool
    failures: list[str] = field(default_factory=list)
    tokenizer_match: bool | None = None
    sample: dict[str, str] = field(default_factory=dict)

    @property
    def source_ppl(self) -> float:
        return math.exp(self.source_loss)

    @property
    def export_ppl(self) -> float:
        return math.exp(self.export_loss)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["source_ppl"], d["export_ppl"] = self.source_ppl, self.export_ppl
        return d

    def summary(self) -> str:
        tok = "" if self.tokenizer_match is None else f", tokenizer {'matches' if self.tokenizer_match else 'DIFFERS'}"
        return (f"greedy tokens {self.greedy_agreement:.0%} match (first {self.greedy_tokens} of "
                f"{self.prompts} prompts), top-1 {self.top1_agreement:.1%}, loss {self.source_loss:.4f} -> "
                f"{self.export_loss:.4f} ({self.loss_delta:+.2%}), KL {self.kl:.4f}{tok}")


def encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def verify(source: Scorer, export: Scorer, tokenizer: Any, *, fmt: str, quantize: str, tol: Tolerance,
           stop_ids: Sequence[int], prompts: Sequence[Messages] | None = None,
           texts: Sequence[Messages] | None = None, greedy_tokens: int = 24,
           tokenizer_match: bool | None = None) -> VerifyReport:
    prompts = list(prompts or DEFAULT_PROMPTS)
    texts = list(texts or DEFAULT_TEXTS)
    stops = frozenset(int(i) for i in stop_ids)

    fractions, sample = [], {}
    for i, msgs in enumerate(prompts):
        ids = prompt_ids(tokenizer, msgs)
        a, b = source.greedy(ids, greedy_tokens, stops), export.greedy(ids, greedy_tokens, stops)
        longest = max(len(a), len(b))
        fractions.append(1.0 if longest == 0 else sum(x == y for x, y in zip(a, b, strict=False)) / longest)
        if i == 0:
            sample = {"prompt": msgs[-1]["content"], "source": tokenizer.decode(a, skip_special_tokens=True),
                      "export": tokenizer.decode(b, skip_special_tokens=True)}

    same = total = scored = 0
    nll_s = nll_e = kl = 0.0
    # the trainer's loss positions: weight-1 assistant turns and their end-of-turn markers
    for ex in encode_all(texts, tokenizer):
        ids = ex.input_ids
        ls, le = _log_softmax(source.logits(ids)), _log_softmax(export.logits(ids))
        vocab = min(ls.shape[-1], le.shape[-1])
        ls, le = ls[:, :vocab], le[:, :vocab]
        same += int((ls[:-1].argmax(-1) == le[:-1].argmax(-1)).sum())
        total += len(ids) - 1
        for pos in range(1, len(ids)):  # logits at pos-1 predict token pos
            if ex.labels[pos] == IGNORE:
                continue
            scored += 1
            nll_s -= ls[pos - 1, ids[pos]]
            nll_e -= le[pos - 1, ids[pos]]
            kl += float((np.exp(ls[pos - 1]) * (ls[pos - 1] - le[pos - 1])).sum())
    scored = max(scored, 1)
    src_loss, exp_loss = nll_s / scored, nll_e / scored
    report = VerifyReport(
        format=fmt, quantize=quantize, prompts=len(prompts), greedy_tokens=greedy_tokens,
        greedy_agreement=float(np.mean(fractions)), top1_agreement=same / max(total, 1),
        source_loss=float(src_loss), export_loss=float(exp_loss),
        loss_delta=float((exp_loss - src_loss) / src_loss) if src_loss else 0.0, kl=kl / scored,
        scored_tokens=scored, tolerance=asdict(tol), passed=True, tokenizer_match=tokenizer_match, sample=sample)
    report.failures = _failures(report, tol)
    report.passed = not report.failures
    return report


def _failures(r: VerifyReport, tol: Tolerance) -> list[str]:
    out = []
    if r.greedy_agreement < tol.min_greedy:
        out.append(f"greedy-token agreement {r.greedy_agreement:.0%} is below {tol.min_greedy:.0%}")
    if r.top1_agreement < tol.min_top1:
        out.append(f"top-1 agreement {r.top1_agreement:.1%} is below {tol.min_top1:.0%}")
    if abs(r.loss_delta) > tol.max_loss_delta:
        out.append(f"loss changed by {r.loss_delta:+.2%}, more than ±{tol.max_loss_delta:.1%}")
    if r.tokenizer_match is False:
        out.append("the exported tokenizer encodes text differently from the source's")
    return out
