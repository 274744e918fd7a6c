"""The model's chat template, in one place: what the model sees for a conversation, what a prompt
encodes to, and which tokens a fine-tune learns from.

Every part of tunery that renders a conversation goes through here (the data statistics, the
trainer, the export check, the server), so they all count the same tokens. ``apply_chat_template``
is called nowhere else.

The trained tokens of a conversation are those of its assistant messages with weight 1 (or no
weight): the content and the end-of-turn marker that closes it, never the assistant header before
it, nor the newline after the marker. They are located by rendering the conversation prefix by
prefix: the prompt before message ``i`` with the generation prompt (it ends with the assistant
header), then the conversation up to and including message ``i``. The difference is the trained
span. So any template that renders prefixes consistently works, without knowing its markers.
Character spans become token positions through the tokenizer's offsets.

The prefixes are rendered a bounded batch at a time and only their lengths kept: rendered all at
once, a long conversation's prefixes add up to the square of its length (3,000 messages took
1.2 GB). Memory now grows with the conversation's length; time still grows with its square (the
template is run once per trained turn), which is why the validator refuses, before templating, an
example with more messages than the model's context has tokens.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunery.chat import ChatMessage, Conversation, Role
from tunery.errors import InvalidInput

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Messages = Conversation | Sequence[ChatMessage] | Sequence[Mapping[str, Any]]
"""A conversation in any of its shapes: a Conversation, ChatMessages, or OpenAI-style dicts."""

Spans = list[tuple[int, int]]

IGNORE = -100
"""The label of a position that takes no loss (PyTorch's cross-entropy ``ignore_index``)."""


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


# --- conversations as the template wants them -------------------------------------------------

def _turns(messages: Messages) -> list[tuple[dict[str, Any], bool]]:
    """Each message as the dict the template gets (no ``weight``: it is tunery's, not the model's)
    and whether it is trained on."""
    if isinstance(messages, Conversation):
        messages = messages.messages
    out: list[tuple[dict[str, Any], bool]] = []
    for i, m in enumerate(messages):
        if isinstance(m, ChatMessage):
            out.append(({"role": m.role.value, "content": m.content}, m.trainable))
        elif isinstance(m, Mapping):
            d = {k: v for k, v in m.items() if k != "weight"}
            out.append((d, m.get("role") == Role.ASSISTANT.value and m.get("weight") != 0))
        else:
            raise InvalidInput(f"messages[{i}] is a {type(m).__name__}, not a chat message", param="messages")
    return out


def _dicts(messages: Messages) -> list[dict[str, Any]]:
    return [d for d, _ in _turns(messages)]


# --- rendering ---------------------------------------------------------------------------------

def render(tokenizer: PreTrainedTokenizerBase, messages: Messages, *, generation_prompt: bool = False,
           tools: list[dict] | None = None) -> str:
    """The text the model sees for ``messages`` (with the assistant header after it when
    ``generation_prompt``); ``tools`` (OpenAI function specs) go to the template as they are.
    A template that rejects the conversation is bad input."""
    # only pass tools when given: templates and tokenizers without tool support keep working
    extra = {} if tools is None else {"tools": tools}
    try:
        return tokenizer.apply_chat_template(_dicts(messages), tokenize=False,
                                             add_generation_prompt=generation_prompt, **extra)
    except Exception as e:  # jinja raises its own errors (and templates raise_exception(...)) for bad turns
        raise InvalidInput(f"the model's chat template rejected the conversation: {e}", param="messages") from e


def render_all(tokenizer: PreTrainedTokenizerBase, conversations: Sequence[Messages], *,
               generation_prompt: bool = False) -> list[str]:
    """:func:`render` for many conversations; one batched call, which is several times faster."""
    if not conversations:
        return []
    try:
        return list(tokenizer.apply_chat_template([_dicts(c) for c in conversations], tokenize=False,
                                                  add_generation_prompt=generation_prompt))
    except Exception:  # one conversation is at fault: render one by one to name the problem
        return [render(tokenizer, c, generation_prompt=generation_prompt) for c in conversations]


def prompt_ids(tokenizer: PreTrainedTokenizerBase, messages: Messages, *, tools: list[dict] | None = None
               ) -> list[int]:
    """The token ids of the prompt for the model's next answer: ``messages`` rendered with the
    generation prompt. The template writes the special tokens itself, so none are added."""
    text = render(tokenizer, messages, generation_prompt=True, tools=tools)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


# --- what is trained ---------------------------------------------------------------------------

PREFIX_BATCH_CHARS = 1 << 20
"""About how many characters of conversation prefixes are rendered in one batched call."""


def _batches(items: list[tuple[int, int]], size: Callable[[tuple[int, int]], int]) -> Iterator[list[tuple[int, int]]]:
    """``items`` in order, cut into batches of about :data:`PREFIX_BATCH_CHARS` (one item at least)."""
    batch, total = [], 0
    for item in items:
        if batch and total + size(item) > PREFIX_BATCH_CHARS:
            yield batch
            batch, total = [], 0
        batch.append(item)
        total += size(item)
    if batch:
        yield batch


def _spans(tokenizer: PreTrainedTokenizerBase, turns: Sequence[list[tuple[dict[str, Any], bool]]]
           ) -> list[tuple[str, Spans]]:
    """Rendered text and trained character spans of each conversation (given as :func:`_turns`)."""
    dicts = [[d for d, _ in t] for t in turns]
    fulls = render_all(tokenizer, dicts)
    where = [(k, i) for k, t in enumerate(turns) for i, (_, trained) in enumerate(t) if trained]
    out: list[tuple[str, Spans]] = [(full, []) for full in fulls]
    # a prefix is no longer than the whole conversation: its length bounds the batch's size
    for batch in _batches(where, lambda ki: 2 * len(fulls[ki[0]])):
        prompts = render_all(tokenizer, [dicts[k][:i] for k, i in batch], generation_prompt=True)
        uptos = render_all(tokenizer, [dicts[k][: i + 1] for k, i in batch])
        for (k, _), prompt, upto in zip(batch, prompts, uptos, strict=True):
            if not (fulls[k].startswith(upto) and upto.startswith(prompt)):
                raise InvalidInput("the model's chat template does not render conversations prefix by prefix, "
                                   "so trained tokens cannot be located", param="model",
                                   hint="fine-tune a model whose template renders each turn after the ones before")
            # the newline after the end-of-turn marker belongs to the layout, not to the answer
            out[k][1].append((len(prompt), len(upto.rstrip("\n"))))
    return out


def trained_spans(tokenizer: PreTrainedTokenizerBase, conversations: Sequence[Messages]
                  ) -> list[tuple[str, Spans]]:
    """Each rendered conversation with the character spans of its trained assistant turns."""
    return _spans(tokenizer, [_turns(c) for c in conversations])


def completion_spans(tokenizer: PreTrainedTokenizerBase, prompt: Messages, completion: str
                     ) -> tuple[str, Spans]:
    """``prompt`` followed by the assistant answer ``completion``, rendered, with the span of that
    answer alone (whatever the weights in ``prompt``): one side of a preference pair."""
    turns = [(d, False) for d, _ in _turns(prompt)]
    turns.append(({"role": Role.ASSISTANT.value, "content": completion}, True))
    return _spans(tokenizer, [turns])[0]


def _inside(spans: Spans) -> Callable[[int], bool]:
    """Whether a character position lies in one of ``spans``: their union as sorted, disjoint
    intervals, searched by bisection (a linear scan of every span for every token took time in
    proportion to the square of a conversation's length)."""
    starts: list[int] = []
    ends: list[int] = []
    for s, e in sorted(spans):
        if e <= s:
            continue
        if ends and s <= ends[-1]:
            ends[-1] = max(ends[-1], e)
        else:
            starts.append(s)
            ends.append(e)

    def inside(pos: int) -> bool:
        j = bisect_right(starts, pos) - 1
        return j >= 0 and pos < ends[j]
    return inside


def _token_masks(tokenizer: PreTrainedTokenizerBase, rendered: Sequence[tuple[str, Spans]]
                 ) -> list[tuple[list[int], list[bool]]]:
    """Token ids of each rendered text and, per token, whether it lies in a trained span."""
    texts = [text for text, _ in rendered]
    if not texts:
        return []
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        out = []
        for (_, spans), ids, offs in zip(rendered, enc["input_ids"], enc["offset_mapping"], strict=True):
            inside = _inside(spans)
            out.append((list(ids), [a != b and inside(a) for a, b in offs]))
        return out
    # slow tokenizers have no offsets: a span covers the tokens it adds to the text before it
    all_ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    out = []
    for (text, spans), ids in zip(rendered, all_ids, strict=True):
        mask = [False] * len(ids)
        # the cut texts too are rendered a batch at a time, for the same reason as the prefixes
        for batch in _batches(spans, lambda span: span[1]):
            before = count_tokens(tokenizer, [text[:s] for s, _ in batch])
            upto = count_tokens(tokenizer, [text[:e] for _, e in batch])
            for b, u in zip(before, upto, strict=True):
                mask[b:u] = [True] * len(mask[b:u])
        out.append((list(ids), mask))
    return out


def _encoded(tokenizer: PreTrainedTokenizerBase, rendered: Sequence[tuple[str, Spans]], max_length: int | None
             ) -> list[EncodedExample]:
    out = []
    for ids, mask in _token_masks(tokenizer, rendered):
        labels = [t if m else IGNORE for t, m in zip(ids, mask, strict=True)]
        truncated = max_length is not None and len(ids) > max_length
        if truncated:
            ids, labels = ids[:max_length], labels[:max_length]
        out.append(EncodedExample(ids, labels, truncated))
    return out


def encode_all(convs: Sequence[Messages], tokenizer: PreTrainedTokenizerBase, *, max_length: int | None = None
               ) -> list[EncodedExample]:
    """Tokenize conversations with their loss masks; one longer than ``max_length`` is truncated
    (its prefix is kept)."""
    return _encoded(tokenizer, trained_spans(tokenizer, convs), max_length)


def encode(conv: Messages, tokenizer: PreTrainedTokenizerBase, *, max_length: int | None = None) -> EncodedExample:
    """:func:`encode_all` for one conversation."""
    return encode_all([conv], tokenizer, max_length=max_length)[0]


def encode_completion(prompt: Messages, completion: str, tokenizer: PreTrainedTokenizerBase, *,
                      max_length: int | None = None) -> EncodedExample:
    """``prompt`` and one assistant answer, with the loss on that answer only (see :func:`completion_spans`)."""
    return _encoded(tokenizer, [completion_spans(tokenizer, prompt, completion)], max_length)[0]


# --- counting ----------------------------------------------------------------------------------

def count_tokens(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[int]:
    """Token counts of already rendered texts (special tokens are part of the text already)."""
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def token_counts(tokenizer: PreTrainedTokenizerBase, conversations: Sequence[Messages]) -> list[int]:
    """Tokens per conversation, rendered with the chat template."""
    return count_tokens(tokenizer, render_all(tokenizer, conversations))


def trained_token_counts(tokenizer: PreTrainedTokenizerBase, conversations: Sequence[Messages]
                         ) -> tuple[list[int], list[int]]:
    """Tokens per conversation and, per conversation, the tokens trained on, exactly as the
    trainer counts them (:attr:`EncodedExample.n_trained`, no truncation)."""
    examples = encode_all(conversations, tokenizer)
    return [len(e) for e in examples], [e.n_trained for e in examples]
