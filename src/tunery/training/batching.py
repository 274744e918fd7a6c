"""Deterministic batch order and padding-light micro-batches.

Each epoch shuffles the examples with a generator seeded by (seed, epoch), so a resumed job sees
exactly the batches it would have seen. Inside one optimizer batch, examples are sorted by length
and cut into micro-batches of about ``micro_batch_tokens`` padded tokens: similar lengths share a
micro-batch, so little compute goes to padding, and since gradients accumulate over the whole
batch the optimizer step is unchanged by how it is cut."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunery.chat_template import IGNORE, EncodedExample

if TYPE_CHECKING:
    import torch


def epoch_batches(n_examples: int, batch_size: int, *, seed: int, epoch: int) -> list[list[int]]:
    order = list(range(n_examples))
    random.Random(seed * 100_003 + epoch).shuffle(order)
    return [order[i:i + batch_size] for i in range(0, n_examples, batch_size)]


def micro_batches(indices: list[int], examples: list[EncodedExample], max_tokens: int) -> list[list[int]]:
    return cut_by_length(indices, lambda i: len(examples[i]), max_tokens)


def cut_by_length(indices: list[int], length: Callable[[int], int], max_tokens: int, *, rows: int = 1
                  ) -> list[list[int]]:
    """``indices`` cut into micro-batches of about ``max_tokens`` padded tokens, similar lengths
    together; each item takes ``rows`` rows of its micro-batch (a preference pair: two)."""
    size = {i: length(i) for i in indices}
    out: list[list[int]] = []
    cur: list[int] = []
    for i in sorted(indices, key=lambda i: (size[i], i)):
        if cur and rows * max(size[j] for j in (*cur, i)) * (len(cur) + 1) > max_tokens:
            out.append(cur)
            cur = []
        cur.append(i)
    if cur:
        out.append(cur)
    return out


@dataclass
class Collated:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None  # None when nothing is padded (the fast causal path)
    targets: torch.Tensor  # [B, T-1]: the next-token labels, IGNORE where no loss
    n_tokens: int  # real (unpadded) tokens
    prefix_len: int = 0
    """Leading tokens shared by every row and carrying no label (e.g. a common system message):
    computed once for the micro-batch instead of once per row (see ``trainer.batch_loss``)."""


MIN_SHARED_PREFIX = 8


def common_prefix(examples: list[EncodedExample]) -> int:
    """Length of the token prefix all ``examples`` share, leaving at least one token of each."""
    first = examples[0].input_ids
    n = min(len(e) for e in examples) - 1
    for e in examples[1:]:
        k = 0
        while k < n and e.input_ids[k] == first[k]:
            k += 1
        n = k
    return n


def shared_prefix(batch: list[EncodedExample]) -> int:
    """Length of the common token prefix that can be computed once: no label may fall inside it,
    nor on the token right after it (that one is predicted from inside the prefix)."""
    if len(batch) < 2:
        return 0
    n = common_prefix(batch)
    for e in batch:
        labelled = next((j for j, lab in enumerate(e.labels) if lab != IGNORE), len(e.labels))
        n = min(n, labelled - 1)
    return n if n >= MIN_SHARED_PREFIX else 0


def collate(batch: list[EncodedExample], pad_id: int, device: torch.device | str = "cpu", *,
            share_prefix: bool = True) -> Collated:
    import torch

    width = max(len(e) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, e in enumerate(batch):
        n = len(e)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    padded = bool((mask == 0).any())
    return Collated(input_ids=ids.to(device), attention_mask=mask.to(device) if padded else None,
                    targets=labels[:, 1:].contiguous().to(device), n_tokens=int(mask.sum()),
                    prefix_len=shared_prefix(batch) if share_prefix else 0)
