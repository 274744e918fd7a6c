"""The one narrow contract every chat backend implements: the PyTorch engine, the ONNX Runtime
engine, a remote OpenAI-compatible endpoint, and the scripted fake used in tests.

Flows, evaluators, the quickstart and the server speak only this contract."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from tunery.chat import ChatMessage

FinishReason = Literal["stop", "length", "content_filter"]


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings, named as in the OpenAI API. ``max_tokens=None`` means up to the
    context length; ``temperature=0`` means greedy."""

    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = 1


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


@dataclass(frozen=True)
class CompletionChunk:
    """A streamed piece of an answer. The last chunk of a choice carries ``finish_reason``; the
    very last chunk of a stream carries ``usage``."""

    text: str = ""
    finish_reason: FinishReason | None = None
    index: int = 0
    usage: Usage | None = None


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
