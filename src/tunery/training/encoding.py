"""Turn conversations into token ids and labels for supervised fine-tuning.

Only assistant messages with weight 1 are trained on: their content and the end-of-turn marker
that closes them. The assistant header the chat template writes before the content
(``<|im_start|>assistant\\n``) is context, as are system and user turns, so they get label -100.

The masks are computed in characters and mapped to tokens with the tokenizer's offsets, so the
approach works for any chat template: we render the conversation prefix by prefix to learn where
each assistant message's trained span begins and ends in the full text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunery.chat import Conversation

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE = -100


@dataclass(frozen=True)
class EncodedExample:
    input_ids: list[int]
    labels: list[int]  # same length; IGNORE where no loss is taken
    truncated: bool = False

    @property
    def n_trained(self) -> int:
        """Positions that carry a loss (label of the next token, after shifting)."""
        return sum(1 for x in self.labels[1:] if x != IGNORE)

    def __len__(self) -> int:
        return len(self.input_ids)


def _render(tokenizer: PreTrainedTokenizerBase, messages: list[dict], *, generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def trained_char_spans(conv: Conversation, tokenizer: PreTrainedTokenizerBase) -> tuple[str, list[tuple[int, int]]]:
    """The rendered text and the character spans that are trained on."""
    msgs = conv.to_dicts()
    full = _render(tokenizer, msgs, generation_prompt=False)
    spans: list[tuple[int, int]] = []
    for i, m in enumerate(conv.messages):
        if not m.trainable:
            continue
        prompt = _render(tokenizer, msgs[:i], generation_prompt=True)
        upto = _render(tokenizer, msgs[: i + 1], generation_prompt=False)
        if not (full.startswith(upto) and upto.startswith(prompt)):
            raise ValueError("the chat template does not render conversations prefix by prefix; "
                             "tunery cannot locate assistant turns in it")
        end = len(upto.rstrip("\n")) if upto.endswith("\n") else len(upto)  # train up to the end marker
        spans.append((len(prompt), end))
    return full, spans


def encode(conv: Conversation, tokenizer: PreTrainedTokenizerBase, *, max_length: int) -> EncodedExample:
    """Tokenize one conversation with its loss mask; longer than ``max_length`` is truncated."""
    text, spans = trained_char_spans(conv, tokenizer)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = enc["input_ids"]
    labels = [IGNORE] * len(ids)
    for j, (start, end) in enumerate(enc["offset_mapping"]):
        if start == end:
            continue
        for s, e in spans:
            if s <= start < e:
                labels[j] = ids[j]
                break
    truncated = len(ids) > max_length
    if truncated:
        ids, labels = ids[:max_length], labels[:max_length]
    return EncodedExample(ids, labels, truncated)


def encode_all(convs: list[Conversation], tokenizer: PreTrainedTokenizerBase, *, max_length: int) -> list[EncodedExample]:
    return [encode(c, tokenizer, max_length=max_length) for c in convs]

