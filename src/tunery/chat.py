"""The one chat vocabulary: messages and the narrow model contract.

``ChatMessage``/``Conversation`` are shared by the data toolkit, the trainer, the server and the
flows. ``ChatModel`` (``generate``/``stream`` with ``GenerationParams``, answering ``Completion`` or
``CompletionChunk``) is what every chat backend implements: the PyTorch engine, the ONNX Runtime
engine, a remote OpenAI-compatible endpoint, and the scripted fake used in tests. Flows,
evaluators, data synthesis, the quickstart and the server speak only this contract."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol, runtime_checkable

from tunery.errors import InvalidInput

MAX_TOP_LOGPROBS = 20
"""OpenAI's bound on ``top_logprobs``: alternatives listed per token."""


class Role(StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One turn of a conversation.

    ``weight`` only matters on assistant messages in training data: 1 (the default) trains on
    the message, 0 keeps it as context without learning from it. ``tool_calls`` (on an assistant
    message) are OpenAI's ``{"id", "type": "function", "function": {"name", "arguments"}}`` with
    ``arguments`` a JSON string; ``tool_call_id`` (on a tool message) names the call it answers.
    An assistant message that only calls tools has ``content`` "" (OpenAI's null).
    """

    role: Role
    content: str
    weight: int | None = None
    tool_calls: tuple[dict[str, Any], ...] | None = None
    tool_call_id: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChatMessage:
        """Build from an OpenAI-style dict; assumes the dict was validated (see tunery.data)."""
        content = d.get("content")
        calls = d.get("tool_calls")
        return cls(role=Role(d["role"]), content="" if content is None else content_text(content),
                   weight=d.get("weight"), tool_calls=None if calls is None else tuple(calls),
                   tool_call_id=d.get("tool_call_id"))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"role": self.role.value, "content": self.content}
        if self.tool_calls is not None:
            d["tool_calls"] = list(self.tool_calls)
        if self.tool_call_id is not None:
            d["tool_call_id"] = self.tool_call_id
        if self.weight is not None:
            d["weight"] = self.weight
        return d

    @property
    def trainable(self) -> bool:
        return self.role is Role.ASSISTANT and self.weight != 0


@dataclass(frozen=True, slots=True)
class Conversation:
    """An ordered list of messages: one training example, or one chat request. ``tools`` are the
    OpenAI tool specs (``{"type": "function", "function": {"name", "description", "parameters"}}``)
    the assistant may call in it."""

    messages: tuple[ChatMessage, ...] = field(default_factory=tuple)
    tools: tuple[dict[str, Any], ...] | None = None

    @classmethod
    def from_dicts(cls, messages: list[dict[str, Any]], tools: Sequence[dict[str, Any]] | None = None
                   ) -> Conversation:
        return cls(tuple(ChatMessage.from_dict(m) for m in messages), None if tools is None else tuple(tools))

    def to_dicts(self, *, with_weights: bool = False) -> list[dict[str, Any]]:
        """The messages as OpenAI dicts (the tools are :attr:`tools`, beside them)."""
        out = []
        for m in self.messages:
            d = m.to_dict()
            if not with_weights:
                d.pop("weight", None)
            out.append(d)
        return out

    @property
    def system(self) -> str | None:
        return next((m.content for m in self.messages if m.role is Role.SYSTEM), None)

    def with_system(self, system: str | None) -> Conversation:
        """Replace (or add, or with None keep) the system message."""
        if system is None:
            return self
        rest = tuple(m for m in self.messages if m.role is not Role.SYSTEM)
        return Conversation((ChatMessage(Role.SYSTEM, system), *rest), self.tools)

    def __len__(self) -> int:
        return len(self.messages)

    def __iter__(self):
        return iter(self.messages)


def content_text(content: Any) -> str:
    """Flatten OpenAI message content (a string, or a list of ``{"type": "text", "text": ...}`` parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                raise ValueError("only text content parts are supported")
        return "".join(parts)
    raise ValueError("content must be a string or a list of text parts")


# The model contract.

FinishReason = Literal["stop", "length", "content_filter"]


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings, named as in the OpenAI API. ``max_tokens=None`` means up to the
    context length; ``temperature=0`` means greedy. ``tools`` (OpenAI function specs),
    ``tool_choice`` (None: OpenAI's default, ``auto`` with tools), ``parallel_tool_calls`` and
    ``response_format`` are honoured by constrained decoding (``tunery.serving.constrained``).
    ``logprobs`` asks for each answer token's log-probability (:class:`TokenLogprob`) and
    ``top_logprobs`` (0-20, with ``logprobs`` only) for that many of the most likely tokens at
    each position. ``logit_bias`` (token ids, as strings in OpenAI's JSON, to -100..100) is added to
    those tokens' logits before each choice; ``presence_penalty`` and ``frequency_penalty`` (-2..2)
    are subtracted from the logit of each token the answer already holds, once and per time it
    appears (``tunery.serving.penalties``). ``tool_call_threshold`` (0-1, tunery's extension; None:
    the model's own, set by ``tunery models calibrate``, else none) lets an ``auto`` answer call a
    tool only when the model gives an answer that opens with a call at least that probability
    (its own, before ``logit_bias``; ``tunery.serving.constrained``); 0 turns it off."""

    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = 1
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool = True
    response_format: dict[str, Any] | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    logit_bias: dict[str, float] | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    tool_call_threshold: float | None = None

    def __post_init__(self) -> None:
        for name, low, high in (("presence_penalty", -2, 2), ("frequency_penalty", -2, 2),
                                ("tool_call_threshold", 0, 1)):
            value = getattr(self, name)
            if value is None and name == "tool_call_threshold":  # the model's own
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                raise InvalidInput(f"{name} must be a number between {low} and {high}, not {value!r}", param=name)
        for key, value in (self.logit_bias or {}).items():
            if not (isinstance(key, str) and key.isascii() and key.isdigit()):
                raise InvalidInput(f"logit_bias keys are token ids written as strings (\"1234\"), not {key!r}",
                                   param="logit_bias")
            if isinstance(value, bool) or not isinstance(value, int | float) or not -100 <= value <= 100:
                raise InvalidInput(f"logit_bias values must be numbers between -100 and 100, not {value!r} "
                                   f"(token {key})", param="logit_bias")
        if not 0 <= self.top_logprobs <= MAX_TOP_LOGPROBS:
            raise InvalidInput(f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}, not {self.top_logprobs}",
                               param="top_logprobs")
        if self.top_logprobs and not self.logprobs:
            raise InvalidInput("top_logprobs requires logprobs to be true", param="top_logprobs",
                               hint="send logprobs: true with it, or leave top_logprobs out")

    def token_bias(self) -> dict[int, float]:
        """``logit_bias`` with its keys as token ids."""
        return {int(k): float(v) for k, v in (self.logit_bias or {}).items()}


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One answer token and its log-probability under the model's raw distribution (the logits'
    log-softmax, before temperature, top-p or a grammar's mask): OpenAI's ``logprobs.content``
    entry. ``utf8`` is the token's exact bytes (a token may hold part of a multi-byte character;
    ``token`` is then its best-effort text, ``bytes:\\xe2\\x80`` as OpenAI writes it); ``top``
    the most likely tokens at its position, most likely first, each without a ``top`` of its own."""

    token: str
    logprob: float
    utf8: bytes
    top: tuple[TokenLogprob, ...] = ()

    def to_openai(self, *, with_top: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {"token": self.token, "logprob": self.logprob, "bytes": list(self.utf8)}
        if with_top:
            d["top_logprobs"] = [t.to_openai(with_top=False) for t in self.top]
        return d


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_openai(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens}


@dataclass(frozen=True)
class Completion:
    """One finished answer (for ``n > 1``, call ``generate`` per choice or use ``choices``)."""

    text: str
    finish_reason: FinishReason
    usage: Usage
    model: str
    choices: tuple[str, ...] = field(default=())  # all choices when n > 1; ``text`` is the first
    logprobs: tuple[tuple[TokenLogprob, ...], ...] | None = None
    """Each choice's tokens (:class:`TokenLogprob`) when ``GenerationParams.logprobs`` asked for them."""


@dataclass(frozen=True)
class CompletionChunk:
    """A streamed piece of an answer. The last chunk of a choice carries ``finish_reason``; the
    very last chunk of a stream carries ``usage``. ``logprobs``: the tokens whose text is now
    sent (when asked for), which may lag the text (a token whose text is held back goes with the
    chunk that completes it)."""

    text: str = ""
    finish_reason: FinishReason | None = None
    index: int = 0
    usage: Usage | None = None
    logprobs: tuple[TokenLogprob, ...] = ()


@runtime_checkable
class ChatModel(Protocol):
    """A model that answers chat messages. ``parallel_requests`` says how many requests callers
    may have in flight at once (a batching engine or a server: several; a scripted fake: 1, so it
    answers in order); callers that do not know it assume 1."""

    name: str
    can_stream: bool
    parallel_requests: int

    def generate(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Completion: ...

    def stream(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Iterator[CompletionChunk]: ...
