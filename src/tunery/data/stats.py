"""Token statistics of a chat data set, measured with the model's own tokenizer and chat template:
what the model will see, what it will learn from, and what a hosted service would bill.

Counting rules (the same the trainer uses):

- an example's tokens are those of the conversation rendered with the chat template, including
  whatever the template adds (role headers, end-of-turn markers, a default system prompt);
- trained tokens are those of assistant messages with weight 1 (or no weight): the content and the
  end-of-turn marker that closes it, not the assistant header before it. They are located by
  rendering the conversation prefix by prefix, so any template that renders prefixes consistently
  works;
- billed tokens follow the OpenAI/Azure rule for fine-tuning: every token of every training example
  is billed once per epoch, trained or not (``total_tokens * n_epochs``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from tunery.chat import Conversation
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


def render(tokenizer: PreTrainedTokenizerBase, messages: list[dict], *, generation_prompt: bool = False) -> str:
    """The text the model sees for ``messages``; a template that rejects them is bad input."""
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    except Exception as e:  # jinja raises its own errors (and templates raise_exception(...)) for bad turns
        raise InvalidInput(f"the model's chat template rejected the conversation: {e}", param="messages") from e


def render_all(tokenizer: PreTrainedTokenizerBase, conversations: Sequence[list[dict]], *,
               generation_prompt: bool = False) -> list[str]:
    """:func:`render` for many conversations; one batched call, which is several times faster."""
    if not conversations:
        return []
    try:
        return list(tokenizer.apply_chat_template(list(conversations), tokenize=False,
                                                  add_generation_prompt=generation_prompt))
    except Exception:  # one conversation is at fault: render one by one to name the problem
        return [render(tokenizer, c, generation_prompt=generation_prompt) for c in conversations]


def trained_spans(tokenizer: PreTrainedTokenizerBase, examples: Sequence[Conversation]
                  ) -> list[tuple[str, list[tuple[int, int]]]]:
    """Each rendered conversation with the character spans of its trained assistant turns."""
    dicts = [c.to_dicts() for c in examples]
    fulls = render_all(tokenizer, dicts)
    where = [(k, i) for k, c in enumerate(examples) for i, m in enumerate(c.messages) if m.trainable]
    prompts = render_all(tokenizer, [dicts[k][:i] for k, i in where], generation_prompt=True)
    uptos = render_all(tokenizer, [dicts[k][: i + 1] for k, i in where])
    out: list[tuple[str, list[tuple[int, int]]]] = [(full, []) for full in fulls]
    for (k, _), prompt, upto in zip(where, prompts, uptos, strict=True):
        if not (fulls[k].startswith(upto) and upto.startswith(prompt)):
            raise InvalidInput("the model's chat template does not render conversations prefix by prefix, "
                               "so trained tokens cannot be located", param="model")
        # the newline after the end-of-turn marker belongs to the layout, not to the answer
        out[k][1].append((len(prompt), len(upto.rstrip("\n"))))
    return out


def count_tokens(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[int]:
    """Token counts of already rendered texts (special tokens are part of the text already)."""
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def example_token_counts(tokenizer: PreTrainedTokenizerBase, examples: Sequence[Conversation]) -> list[int]:
    """Tokens per example, rendered with the chat template."""
    return count_tokens(tokenizer, render_all(tokenizer, [c.to_dicts() for c in examples]))


def _count(tokenizer: PreTrainedTokenizerBase, rendered: list[tuple[str, list[tuple[int, int]]]]
           ) -> tuple[list[int], int]:
    """Tokens per example and trained tokens in all."""
    texts = [text for text, _ in rendered]
    if not texts:
        return [], 0
    if getattr(tokenizer, "is_fast", False):
        offsets = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        trained = sum(1 for (_, spans), offs in zip(rendered, offsets, strict=True) for a, b in offs
                      if a != b and any(s <= a < e for s, e in spans))
        return [len(o) for o in offsets], trained
    # slow tokenizers have no offsets: count the tokens each span adds to the text before it
    cuts = [(text[:s], text[:e]) for text, spans in rendered for s, e in spans]
    before = count_tokens(tokenizer, [a for a, _ in cuts])
    upto = count_tokens(tokenizer, [b for _, b in cuts])
    return count_tokens(tokenizer, texts), sum(u - b for b, u in zip(before, upto, strict=True))


def token_stats(examples: Sequence[Conversation], tokenizer: PreTrainedTokenizerBase, *, context_length: int,
                n_epochs: int = 3) -> DataStats:
    """Measure ``examples`` (valid conversations, e.g. ``[c for _, c in report.examples]``)."""
    if n_epochs < 1:
        raise InvalidInput(f"n_epochs must be at least 1, not {n_epochs}", param="n_epochs")
    lengths, trained = _count(tokenizer, trained_spans(tokenizer, examples))
    total = sum(lengths)
    return DataStats(
        n_examples=len(examples),
        turns=Summary.of([len(c) for c in examples]),
        tokens=Summary.of(lengths),
        total_tokens=total,
        trained_tokens=trained,
        n_epochs=n_epochs,
        billed_tokens=total * n_epochs,
        context_length=context_length,
        n_over_context=sum(1 for n in lengths if n > context_length),
    )
