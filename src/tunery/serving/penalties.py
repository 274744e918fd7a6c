"""OpenAI's ``logit_bias``, ``presence_penalty`` and ``frequency_penalty`` on one row of logits,
shared by both engines: a request that sets any of them gets a :class:`Penalties` that adjusts its
row before the token is chosen (greedy or sampled) and before a grammar's mask, and counts the
tokens the answer has written so far (the prompt's never count)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from tunery.serving.engine import EngineRequest


class Penalties:
    """One request's bias and penalties, and the counts of the tokens its answer holds so far."""

    def __init__(self, logit_bias: dict[int, float], presence: float, frequency: float) -> None:
        self._bias_ids = np.fromiter(logit_bias, dtype=np.int64, count=len(logit_bias))
        self._bias = np.fromiter(logit_bias.values(), dtype=np.float32, count=len(logit_bias))
        self.presence = presence
        self.frequency = frequency
        self.counts: Counter[int] = Counter()

    def apply(self, row: np.ndarray) -> None:
        """Adjust one row of logits in place: each biased token's logit plus its bias, then each
        written token's minus ``presence + frequency * count`` (OpenAI's definition)."""
        n = row.shape[0]
        if self._bias_ids.size:
            keep = self._bias_ids < n  # the tokenizer may count a few ids past the model's logits
            row[self._bias_ids[keep]] += self._bias[keep]
        if self.counts and (self.presence or self.frequency):
            ids = np.fromiter(self.counts, dtype=np.int64, count=len(self.counts))
            counts = np.fromiter(self.counts.values(), dtype=np.float32, count=len(self.counts))
            keep = ids < n
            row[ids[keep]] -= self.presence + self.frequency * counts[keep]

    def add(self, token: int) -> None:
        """Count a token the answer wrote."""
        self.counts[token] += 1


def penalties(req: EngineRequest) -> Penalties | None:
    """The request's :class:`Penalties`, or None when it sets none (its logits are left as they are)."""
    if not (req.logit_bias or req.presence_penalty or req.frequency_penalty):
        return None
    return Penalties(dict(req.logit_bias or {}), req.presence_penalty, req.frequency_penalty)
