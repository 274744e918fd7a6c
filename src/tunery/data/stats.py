"""Token statistics of a chat data set, measured with the model's own tokenizer and chat template:
what the model will see, what it will learn from, and what a hosted service would bill.

Counting rules (the trainer's, from :mod:`tunery.chat_template`):

- an example's tokens are those of the conversation rendered with the chat template, including
  whatever the template adds (role headers, end-of-turn markers, a default system prompt);
- trained tokens are those of assistant messages with weight 1 (or no weight): the content and the
  end-of-turn marker that closes it, not the assistant header before it: exactly the positions
  the trainer takes a loss on;
- billed tokens follow the OpenAI/Azure rule for fine-tuning: every token of every training example
  is billed once per epoch, trained or not (``total_tokens * n_epochs``).
"""

from __future__ import annotations

import math
import statistics
from array import array
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from tunery.chat import Conversation
from tunery.chat_template import trained_token_counts
from tunery.errors import InvalidInput

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True, slots=True)
class Summary:
    """Distribution of one per-example quantity."""

    min: int
    median: float
    p95: int
    max: int
    mean: float

    @classmethod
    def of(cls, values: Sequence[int]) -> Summary:
        if not values:
            return cls(0, 0.0, 0, 0, 0.0)
        s = sorted(values)
        # nearest-rank percentile: an actual value of the data, never an interpolation
        p95 = s[max(0, math.ceil(0.95 * len(s)) - 1)]
        return cls(s[0], float(statistics.median(s)), p95, s[-1], sum(s) / len(s))


@dataclass(frozen=True, slots=True)
class DataStats:
    """Token statistics of a data set for one model. ``turns`` counts messages per example (the
    system message included); ``tokens`` counts tokens per rendered example."""

    n_examples: int
    turns: Summary
    tokens: Summary
    total_tokens: int
    trained_tokens: int
    n_epochs: int
    billed_tokens: int
    context_length: int
    n_over_context: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TokenTally:
    """Token statistics gathered example by example (:meth:`add`), so that a data set of any size is
    measured in memory for two numbers per example (16 bytes), never for its text. The median and
    the 95th percentile need every example's count, so those are kept; nothing else is."""

    def __init__(self) -> None:
        self.turns = array("q")
        self.tokens = array("q")
        self.trained = 0

    def add(self, turns: int, tokens: int, trained: int) -> None:
        self.turns.append(turns)
        self.tokens.append(tokens)
        self.trained += trained

    def __len__(self) -> int:
        return len(self.tokens)

    def stats(self, *, context_length: int, n_epochs: int = 3) -> DataStats:
        _check_epochs(n_epochs)
        total = sum(self.tokens)
        return DataStats(
            n_examples=len(self.tokens),
            turns=Summary.of(self.turns),
            tokens=Summary.of(self.tokens),
            total_tokens=total,
            trained_tokens=self.trained,
            n_epochs=n_epochs,
            billed_tokens=total * n_epochs,
            context_length=context_length,
            n_over_context=sum(1 for n in self.tokens if n > context_length),
        )


def _check_epochs(n_epochs: int) -> None:
    if n_epochs < 1:
        raise InvalidInput(f"n_epochs must be at least 1, not {n_epochs}", param="n_epochs")


def token_stats(examples: Sequence[Conversation], tokenizer: PreTrainedTokenizerBase, *, context_length: int,
                n_epochs: int = 3) -> DataStats:
    """Measure ``examples`` (valid conversations, e.g. ``[c for _, c in report.examples]``)."""
    _check_epochs(n_epochs)
    tally = TokenTally()
    lengths, trained = trained_token_counts(tokenizer, examples)
    for conv, n, t in zip(examples, lengths, trained, strict=True):
        tally.add(len(conv), n, t)
    return tally.stats(context_length=context_length, n_epochs=n_epochs)
