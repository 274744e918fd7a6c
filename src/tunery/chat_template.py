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

Tool calling (OpenAI's ``tools``, assistant ``tool_calls`` and ``tool`` messages) goes to the
model's own template when that template knows tools (its text names ``tools`` or
``tool_calls``): the calls' JSON ``arguments`` are handed over as objects, as Hugging Face
templates expect. A template that does not (SmolLM2's) gets one fallback, the format several open
model families use, written into plain system/user/assistant turns:

- the tool definitions, one JSON object per line between ``<tools>`` and ``</tools>`` after
  :data:`TOOLS_INSTRUCTION`, are appended to the system message (or make a new one);
- an assistant message's calls follow its content, one block per call (parallel calls are
  several blocks): ``<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>``
  (:func:`tool_call_text`; :func:`parse_tool_calls` reads them back from a model's answer);
- tool results become a user turn, each as ``<tool_response>\n...\n</tool_response>``
  (consecutive results, answering parallel calls, share one turn).

Either way an assistant message with tool calls is trained on like any other (its weight is
honoured), and tool results, never.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunery.chat import ChatMessage, Conversation, Role, content_text
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


# --- tool calls as text (the fallback format) ---------------------------------------------------

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
TOOL_RESPONSE_OPEN = "<tool_response>"
TOOL_RESPONSE_CLOSE = "</tool_response>"
TOOLS_INSTRUCTION = (
    "You may call one or more functions to help with the user's request. The functions are listed below "
    'as JSON. To call one, answer with {"name": <function name>, "arguments": <arguments as a JSON object>} '
    f"between {TOOL_CALL_OPEN} and {TOOL_CALL_CLOSE}, one block per call; call none when none is needed.")
"""The line before the tool definitions in the fallback system message."""

_BLOCK = re.compile(re.escape(TOOL_CALL_OPEN) + r"(.*?)(?:" + re.escape(TOOL_CALL_CLOSE) + r"|\Z)", re.S)


def _call_parts(call: Mapping[str, Any]) -> tuple[str, Any]:
    """Name and arguments (parsed when they are a JSON string) of an OpenAI tool call, or of a
    bare ``{"name", "arguments"}``. Arguments that do not parse stay the string they are."""
    fn = call.get("function", call)
    args = fn.get("arguments", {})
    if isinstance(args, str):
        with contextlib.suppress(ValueError, RecursionError):
            args = json.loads(args)
    return fn.get("name", ""), args


def tool_call_text(calls: Sequence[Mapping[str, Any]]) -> str:
    """OpenAI tool calls as the fallback format writes them: one ``<tool_call>`` block each."""
    blocks = []
    for call in calls:
        name, args = _call_parts(call)
        body = json.dumps({"name": name, "arguments": args}, ensure_ascii=False)
        blocks.append(f"{TOOL_CALL_OPEN}\n{body}\n{TOOL_CALL_CLOSE}")
    return "\n".join(blocks)


def answer_text(content: str, calls: Sequence[Mapping[str, Any]]) -> str:
    """An assistant answer as the fallback writes it: its content, then its tool calls
    (:func:`tool_call_text`) on the next line; the one form every reader of an answer parses."""
    if not calls:
        return content
    blocks = tool_call_text(calls)
    return f"{content}\n{blocks}" if content else blocks


def parse_tool_calls(text: str) -> tuple[str, list[dict[str, Any]]]:
    """A model's answer split into its plain content and its tool calls, as OpenAI's
    ``tool_calls`` (each with a fresh ``call_...`` id and ``arguments`` a JSON string). A block
    whose body is not a JSON object with a string ``name`` and object ``arguments`` stays in the
    content, as written: a malformed call is text, never an error. A last block cut off before
    its closing tag counts when its JSON is whole."""
    calls: list[dict[str, Any]] = []
    kept: list[str] = []
    pos = 0
    for m in _BLOCK.finditer(text):
        try:
            body = json.loads(m.group(1))
        except (ValueError, RecursionError):
            continue
        if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not body["name"]:
            continue
        args = body.get("arguments", {})
        if isinstance(args, str):  # some models write the arguments as a JSON string, as the API does
            try:
                args = json.loads(args)
            except (ValueError, RecursionError):
                continue
        if not isinstance(args, dict):
            continue
        kept.append(text[pos:m.start()])
        pos = m.end()
        calls.append({"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                      "function": {"name": body["name"], "arguments": json.dumps(args, ensure_ascii=False)}})
    kept.append(text[pos:])
    return ("".join(kept).strip() if calls else text), calls


def supports_tools(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the model's own chat template renders tools (its text names them)."""
    template = getattr(tokenizer, "chat_template", None)
    text = json.dumps(template) if isinstance(template, dict | list) else str(template or "")
    return "tools" in text or "tool_calls" in text


def _fallback(turns: list[tuple[dict[str, Any], bool]], tools: Sequence[Mapping[str, Any]] | None
              ) -> list[tuple[dict[str, Any], bool]]:
    """Turns with tools, tool calls and tool results written as plain text (the module's fallback)."""
    out: list[tuple[dict[str, Any], bool]] = []
    after_result = False  # consecutive results (of parallel calls) share one turn
    for d, trained in turns:
        role, content = d.get("role"), d.get("content")
        content = "" if content is None else content
        if d.get("tool_calls"):
            d = {"role": role, "content": answer_text(content_text(content), d["tool_calls"])}
        elif role == Role.TOOL.value:
            text = f"{TOOL_RESPONSE_OPEN}\n{content_text(content)}\n{TOOL_RESPONSE_CLOSE}"
            if after_result:
                out[-1] = ({**out[-1][0], "content": f"{out[-1][0]['content']}\n{text}"}, False)
            else:
                out.append(({"role": Role.USER.value, "content": text}, False))
            after_result = True
            continue
        else:
            d = {**{k: v for k, v in d.items() if k not in ("tool_calls", "tool_call_id")}, "content": content}
        after_result = False
        out.append((d, trained))
    if tools:
        specs = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
        block = f"{TOOLS_INSTRUCTION}\n<tools>\n{specs}\n</tools>"
        if out and out[0][0].get("role") == Role.SYSTEM.value:
            system = out[0][0].get("content") or ""
            out[0] = ({**out[0][0], "content": f"{system}\n\n{block}" if system else block}, False)
        else:
            out.insert(0, ({"role": Role.SYSTEM.value, "content": block}, False))
    return out


def _native(turns: list[tuple[dict[str, Any], bool]]) -> list[tuple[dict[str, Any], bool]]:
    """Turns for a template that knows tools: call arguments as objects, and each tool result
    named after the function whose call it answers."""
    names: dict[str, str] = {}
    out = []
    for d, trained in turns:
        if d.get("tool_calls"):
            calls = []
            for c in d["tool_calls"]:
                name, args = _call_parts(c)
                names[c.get("id", "")] = name
                calls.append({**c, "type": "function", "function": {"name": name, "arguments": args}})
            d = {**d, "tool_calls": calls, "content": d.get("content") or ""}
        elif d.get("role") == Role.TOOL.value and "name" not in d and d.get("tool_call_id") in names:
            d = {**d, "name": names[d["tool_call_id"]]}
        out.append((d, trained))
    return out


# --- conversations as the template wants them -------------------------------------------------

_Prepared = tuple[list[tuple[dict[str, Any], bool]], list[dict[str, Any]] | None]
"""A conversation's turns as the template gets them, each with whether it is trained on, and the
``tools`` to pass the template (None: none, or already written into the turns)."""


def _turns(tokenizer: PreTrainedTokenizerBase, messages: Messages,
           tools: Sequence[Mapping[str, Any]] | None = None) -> _Prepared:
    """Each message as the dict the template gets (no ``weight``: it is tunery's, not the model's)
    and whether it is trained on; tools (``tools``, else the conversation's own) as the template
    takes them."""
    if isinstance(messages, Conversation):
        if tools is None and messages.tools is not None:
            tools = list(messages.tools)
        messages = messages.messages
    out: list[tuple[dict[str, Any], bool]] = []
    for i, m in enumerate(messages):
        if isinstance(m, ChatMessage):
            d = m.to_dict()
            d.pop("weight", None)
            out.append((d, m.trainable))
        elif isinstance(m, Mapping):
            d = {k: v for k, v in m.items() if k != "weight"}
            out.append((d, m.get("role") == Role.ASSISTANT.value and m.get("weight") != 0))
        else:
            raise InvalidInput(f"messages[{i}] is a {type(m).__name__}, not a chat message", param="messages")
    uses_tools = bool(tools) or any(d.get("tool_calls") or d.get("role") == Role.TOOL.value for d, _ in out)
    if not uses_tools:
        return out, None
    if supports_tools(tokenizer):
        return _native(out), list(tools) if tools else None
    return _fallback(out, tools), None


_SYSTEM_ROLE: dict[str, bool] = {}


def _takes_system(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the model's template has a system role (Gemma 2's raises on one), tried once per
    template."""
    key = str(getattr(tokenizer, "chat_template", None))
    if key not in _SYSTEM_ROLE:
        user = [{"role": Role.USER.value, "content": "u"}]
        try:
            tokenizer.apply_chat_template([{"role": Role.SYSTEM.value, "content": "s"}, *user], tokenize=False)
            _SYSTEM_ROLE[key] = True
        except Exception:  # the template's own raise_exception
            try:
                tokenizer.apply_chat_template(user, tokenize=False)
                _SYSTEM_ROLE[key] = False
            except Exception:  # it fails for another reason: leave conversations as they are
                _SYSTEM_ROLE[key] = True
    return _SYSTEM_ROLE[key]


def _fold_system(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For a template without a system role: a leading system message put at the head of the first
    user turn, as Gemma 3's own template does (a conversation with no user turn is left alone)."""
    if not messages or messages[0].get("role") != Role.SYSTEM.value:
        return messages
    system, rest = messages[0], messages[1:]
    for j, m in enumerate(rest):
        if m.get("role") == Role.USER.value and isinstance(m.get("content"), str):
            return [*rest[:j], {**m, "content": f"{system.get('content')}\n\n{m['content']}"}, *rest[j + 1:]]
    return messages


def _apply(tokenizer: PreTrainedTokenizerBase, items: Sequence[tuple[list[dict[str, Any]], list | None]],
           generation_prompt: bool) -> list[str]:
    """Render conversations (each its dicts and tools) in order: one batched call per set of tools
    (the template takes one ``tools`` per call), one by one when a batch fails, to name the
    conversation at fault. A template that rejects a conversation is bad input."""
    if not _takes_system(tokenizer):
        items = [(_fold_system(d), tools) for d, tools in items]
    groups: dict[str, list[int]] = {}
    for k, (_, tools) in enumerate(items):
        groups.setdefault(json.dumps(tools, sort_keys=True), []).append(k)
    out: list[str] = [""] * len(items)
    for ks in groups.values():
        tools = items[ks[0]][1]
        # only pass tools when given: templates and tokenizers without tool support keep working
        extra = {} if tools is None else {"tools": tools}
        try:
            texts = list(tokenizer.apply_chat_template([items[k][0] for k in ks], tokenize=False,
                                                       add_generation_prompt=generation_prompt, **extra))
        except Exception:
            texts = []
            for k in ks:
                try:
                    texts.append(tokenizer.apply_chat_template(items[k][0], tokenize=False,
                                                               add_generation_prompt=generation_prompt, **extra))
                except Exception as e:  # jinja raises its own errors (and templates raise_exception(...))
                    raise InvalidInput(f"the model's chat template rejected the conversation: {e}",
                                       param="messages") from e
        for k, text in zip(ks, texts, strict=True):
            out[k] = text
    return out


# --- rendering ---------------------------------------------------------------------------------

def render(tokenizer: PreTrainedTokenizerBase, messages: Messages, *, generation_prompt: bool = False,
           tools: Sequence[Mapping[str, Any]] | None = None) -> str:
    """The text the model sees for ``messages`` (with the assistant header after it when
    ``generation_prompt``); ``tools`` (OpenAI tool specs; default: a Conversation's own) are
    rendered as the module docstring says. A template that rejects the conversation is bad input."""
    turns, kw = _turns(tokenizer, messages, tools)
    return _apply(tokenizer, [([d for d, _ in turns], kw)], generation_prompt)[0]


def render_all(tokenizer: PreTrainedTokenizerBase, conversations: Sequence[Messages], *,
               generation_prompt: bool = False) -> list[str]:
    """:func:`render` for many conversations (each with its own tools); batched calls, which are
    several times faster."""
    prepared = [_turns(tokenizer, c) for c in conversations]
    return _apply(tokenizer, [([d for d, _ in t], kw) for t, kw in prepared], generation_prompt)


def prompt_ids(tokenizer: PreTrainedTokenizerBase, messages: Messages, *,
               tools: Sequence[Mapping[str, Any]] | None = None) -> list[int]:
    """The token ids of the prompt for the model's next answer: ``messages`` rendered with the
    generation prompt (and ``tools``). The template writes the special tokens itself, so none are added.

    A message whose text (``content``) holds a control token's spelling (``<|im_start|>``,
    ``<|im_end|>``...) gets it as the plain text it is, as OpenAI reads it: read as the control
    token, it would let a user end their turn and write a system turn of their own. Such text (rare)
    is held out of the rendering by a placeholder and encoded on its own with the special tokens
    split; everything else is encoded as before. Tool definitions and call arguments are covered
    too: the fallback writes them into the messages' text; a template that renders tools itself
    gets each control token in their strings as a placeholder (the text around it is encoded
    apart from it, so its tokens may split at the seam; the text is the same). This needs a
    tokenizer whose pieces join to the text (byte-level BPE: SmolLM2's, Qwen's, Llama 3's); one
    that marks the start of each text it encodes (SentencePiece's) encodes the whole text as
    before, control tokens included."""
    turns, kw = _turns(tokenizer, messages, tools)
    dicts = [d for d, _ in turns]
    controls = control_tokens(tokenizer)
    held: dict[str, str] = {}

    def hold(text: str) -> str:
        key = f"\ue000{len(held)}\ue001"  # private-use characters (a text that writes a key is refused below)
        held[key] = text
        return key

    def hold_each(value: Any) -> Any:  # each control token in the strings of a structure, on its own
        if isinstance(value, str):
            return re.sub("|".join(map(re.escape, controls)), lambda m: hold(m.group()), value) if controls else value
        if isinstance(value, Mapping):
            return {hold_each(k): hold_each(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [hold_each(v) for v in value]
        return value

    for i, d in enumerate(dicts):
        text = d.get("content")
        if isinstance(text, str) and any(c in text for c in controls):
            d = dicts[i] = {**d, "content": hold(text)}
        if d.get("tool_calls"):  # as objects only for a template that renders calls itself
            dicts[i] = {**d, "tool_calls": hold_each(d["tool_calls"])}
    if kw:
        kw = hold_each(kw)
    rendered = _apply(tokenizer, [(dicts, kw)], True)[0]
    if not held:
        return list(tokenizer(rendered, add_special_tokens=False)["input_ids"])
    pieces = re.split("(\ue000\\d+\ue001)", rendered)
    if sorted(p for p in pieces if p in held) != sorted(held):  # the template changed or repeated a text
        token = next((c for c in controls if any(c in t for t in held.values())), "\ue000")
        raise InvalidInput(f"a message holds the model's control token {token!r}, which this model's chat "
                           "template cannot take as plain text", param="messages",
                           hint="leave the control token out of the message")
    ids: list[int] = []
    for piece in pieces:
        if piece in held:
            ids += tokenizer(held[piece], add_special_tokens=False, split_special_tokens=True)["input_ids"]
        elif piece:
            ids += tokenizer(piece, add_special_tokens=False)["input_ids"]
    whole = "".join(held.get(piece, piece) for piece in pieces)
    if tokenizer.decode(ids) != whole:
        # a tokenizer that marks the start of each call's text (SentencePiece's "▁", Mistral's) cannot
        # be encoded piece by piece: such a model reads the text as before, control tokens included
        return list(tokenizer(whole, add_special_tokens=False)["input_ids"])
    return ids


def control_tokens(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """The spellings of the tokenizer's special added tokens (none for a tokenizer without a Rust
    backend)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return []
    return [t.content for t in backend.get_added_tokens_decoder().values() if t.special and t.content]


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


def _spans(tokenizer: PreTrainedTokenizerBase, prepared: Sequence[_Prepared]) -> list[tuple[str, Spans]]:
    """Rendered text and trained character spans of each conversation (given as :func:`_turns`)."""
    dicts = [[d for d, _ in t] for t, _ in prepared]
    kws = [kw for _, kw in prepared]
    fulls = _apply(tokenizer, list(zip(dicts, kws, strict=True)), False)
    where = [(k, i) for k, (t, _) in enumerate(prepared) for i, (_, trained) in enumerate(t) if trained]
    out: list[tuple[str, Spans]] = [(full, []) for full in fulls]
    # a prefix is no longer than the whole conversation: its length bounds the batch's size
    for batch in _batches(where, lambda ki: 2 * len(fulls[ki[0]])):
        prompts = _apply(tokenizer, [(dicts[k][:i], kws[k]) for k, i in batch], True)
        uptos = _apply(tokenizer, [(dicts[k][: i + 1], kws[k]) for k, i in batch], False)
        for (k, i), prompt, upto in zip(batch, prompts, uptos, strict=True):
            spans = out[k][1]
            if fulls[k].startswith(upto) and upto.startswith(prompt):
                # the newline after the end-of-turn marker belongs to the layout, not to the answer
                span: tuple[int, int] | None = (len(prompt), len(upto.rstrip("\n")))
            else:
                marked = [*dicts[k][:i], {**dicts[k][i], "content": _MARK}, *dicts[k][i + 1:]]
                span = _span(fulls[k], prompt, upto, _apply(tokenizer, [(marked, kws[k])], False)[0],
                             dicts[k][i].get("content"), spans[-1][1] if spans else 0)
            if span is None:
                raise InvalidInput("the model's chat template does not render conversations prefix by prefix, "
                                   "so trained tokens cannot be located", param="model",
                                   hint="fine-tune a model whose template renders each turn after the ones before")
            spans.append(span)
    return out


_MARK = "\ue000tunery-answer\ue001"
"""Stands in for an answer to find where a template puts it (private-use characters: no text has them)."""


def _span(full: str, prompt: str, upto: str, marked: str, content: Any, cursor: int) -> tuple[int, int] | None:
    """Where one trained answer lies in ``full`` (the whole conversation rendered) when the template
    renders a turn differently once later turns follow: Phi-3 ends a conversation with its
    end-of-text token, Qwen3 drops earlier answers' <think> blocks, Mistral moves the system
    message to the last user turn. ``marked`` is ``full`` with the answer replaced by
    :data:`_MARK`, so the answer starts where the mark does; it ends with the end-of-turn marker
    that ``upto`` (the conversation through the answer) and ``full`` agree on. ``prompt`` is the
    conversation before the answer with the generation prompt; ``cursor`` the end of the answer
    before. None when the template changes the answer's own text."""
    text = content.split("</think>")[-1].strip() if isinstance(content, str) else ""
    at = marked.find(_MARK)
    if not text or at < cursor or upto.rfind(text) < 0:
        return None
    at += len(full[at:]) - len(full[at:].lstrip())  # the answer's own leading spacing, stripped above
    if full[at:at + len(text)] != text:
        return None
    if full.startswith(prompt) and cursor <= len(prompt) <= at:
        start = len(prompt)  # all the model writes after its header (e.g. an empty <think> block)
    else:
        start = at
        while start > cursor and full[start - 1] == " ":  # the space a template puts before an answer
            start -= 1
    end = at + len(text)
    after = upto[upto.rfind(text) + len(text):]
    tail = os.path.commonprefix([after, full[end:]])
    if tail != after and "\n" in tail:  # "<|end|>\n<|" of "<|end|>\n<|endoftext|>" and "<|end|>\n<|user|>"
        tail = tail[:tail.rfind("\n")]
    return start, end + len(tail.rstrip("\n"))


def trained_spans(tokenizer: PreTrainedTokenizerBase, conversations: Sequence[Messages]
                  ) -> list[tuple[str, Spans]]:
    """Each rendered conversation with the character spans of its trained assistant turns."""
    return _spans(tokenizer, [_turns(tokenizer, c) for c in conversations])


def completion_spans(tokenizer: PreTrainedTokenizerBase, prompt: Messages, completion: str
                     ) -> tuple[str, Spans]:
    """``prompt`` followed by the assistant answer ``completion``, rendered, with the span of that
    answer alone (whatever the weights in ``prompt``): one side of a preference pair."""
    turns, kw = _turns(tokenizer, prompt)
    turns = [(d, False) for d, _ in turns]
    turns.append(({"role": Role.ASSISTANT.value, "content": completion}, True))
    return _spans(tokenizer, [(turns, kw)])[0]


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
