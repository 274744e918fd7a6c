"""The inference-engine contract: what the server and ``LocalChatModel`` hand to an engine, and
what comes back.

An engine owns one copy of a model's weights and turns token-id prompts into streamed text. It is
deliberately narrow (``submit`` a request whose ``emit`` callback receives ``Delta`` events, and
``close``) so that the PyTorch engine (``torch_engine``), the ONNX Runtime engine and, on GPU, a
vLLM engine can sit behind the same routes: chat templates, context checks, ``n`` choices,
deployments and rate limits all live above it, in ``tunery.serving.manager`` and ``local``.

The text helpers here (incremental detokenization and stop-string hold-back, with the scored
tokens of a request that asked for log-probabilities, ``tunery.serving.logprobs``) are shared by
any engine that decodes token by token.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from tunery.chat import TokenLogprob
from tunery.serving.logprobs import AnswerLogprobs, Scored

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Adapter:
    """A LoRA adapter to apply on top of the engine's base weights. ``key`` identifies it (the
    same key means the same weights); ``path`` is a PEFT adapter folder."""

    key: str
    path: Path


@dataclass(frozen=True)
class Delta:
    """One event of one choice: new text, and on the last event a ``finish_reason`` ("stop" or
    "length") or an ``error``. ``completion_tokens`` counts every token generated so far,
    including the end-of-turn token when the model emitted one. ``logprobs`` (for a request that
    asked) are the tokens whose text is sent by now and was not listed before: they may lag the
    text a little (a token whose text is held back goes with the event that sends its end), and
    never list the end-of-turn token."""

    index: int
    text: str = ""
    completion_tokens: int = 0
    finish_reason: str | None = None
    error: BaseException | None = None
    logprobs: tuple[TokenLogprob, ...] = ()

    @property
    def final(self) -> bool:
        return self.finish_reason is not None or self.error is not None


@dataclass
class EngineRequest:
    """One choice to generate. ``max_tokens`` is already resolved (it fits the context), and
    ``seed`` is always set: each request samples from its own generator, so the same seed gives
    the same answer however requests happen to be batched together."""

    prompt_ids: list[int]
    max_tokens: int
    emit: Callable[[Delta], None]
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()
    adapter: Adapter | None = None
    index: int = 0
    ignore_eos: bool = False
    cancelled: threading.Event = field(default_factory=threading.Event)
    logprobs: int | None = None
    """When set, each ``Delta`` lists its tokens' log-probabilities under the model's raw
    distribution (before temperature, top-p or the grammar), each with this many (0-20) of the
    most likely tokens at its position (``tunery.serving.logprobs``)."""
    grammar: str | None = None
    """When set, every token is sampled among those this Lark grammar allows
    (``tunery.serving.constrained``), each request with its own matcher."""
    call_gate: tuple[float, str] | None = None
    """With ``grammar``: the call threshold and the grammar an answer below it must follow
    (``tunery.serving.constrained.call_gate``)."""
    logit_bias: dict[int, float] | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    """OpenAI's bias and penalties, applied to this request's logits before the token is chosen
    and before the grammar (``tunery.serving.penalties``); log-probabilities stay the raw ones."""


CLOSE = object()
"""Put in an engine's inbox by ``close``: the loop ends after the work in hand."""


class ThreadedEngine:
    """Plumbing for an engine that works on a thread of its own: an inbox of requests that
    ``submit`` fills and ``_loop`` drains, ``busy`` and ``close``. Subclasses write ``_loop`` (and
    ``_active`` when they keep requests outside the inbox); ``_loop`` returns once it takes
    ``CLOSE`` (or fails), after answering the requests it holds (those still generating get a
    final ``Delta`` with an error, "the engine was closed").

    Every request gets a final ``Delta``, however it races with ``close``: a request is put in the
    inbox only while the engine is open, under the same lock that puts ``CLOSE``, so it lands
    before ``CLOSE`` and the loop takes it; whatever the loop leaves in the inbox when it ends (it
    may end early) is answered "the engine was closed" (or with the loop's error, when it failed),
    and so is a request submitted after."""

    name: str

    def _start(self, thread_name: str) -> None:
        self._inbox: queue.Queue = queue.Queue()
        self._working = False
        self._closed = False
        self._gate = threading.Lock()  # makes "still open?" and the put into the inbox one step
        self._thread = threading.Thread(target=self._serve, name=thread_name, daemon=True)
        self._thread.start()

    def submit(self, request: EngineRequest) -> None:
        with self._gate:
            if not self._closed:
                self._inbox.put(request)
                return
        request.emit(Delta(request.index, error=RuntimeError("the engine was closed")))

    def busy(self) -> bool:
        return self._working or self._active() or not self._inbox.empty()

    def _active(self) -> bool:
        return False

    def close(self) -> None:
        with self._gate:
            if self._closed:
                return
            self._closed = True
            self._inbox.put(CLOSE)
        self._thread.join(timeout=30)

    def _serve(self) -> None:
        error: BaseException = RuntimeError("the engine was closed")
        try:
            self._loop()
        except Exception as e:
            log.exception("the engine loop of %s failed", self.name)
            error = e
            self._fail_all(e)
        finally:
            with self._gate:  # a loop that failed takes no more requests either
                self._closed = True
            self._working = False
            while True:
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if item is not CLOSE:
                    item.emit(Delta(item.index, error=error))

    def _loop(self) -> None:
        raise NotImplementedError

    def _fail_all(self, error: BaseException) -> None:
        """Answer the requests the loop holds outside the inbox with ``error`` (its loop failed)."""


@runtime_checkable
class Engine(Protocol):
    """What an engine provides. ``submit`` must return at once (work happens on the engine's own
    thread or event loop) and must eventually call ``request.emit`` with a final ``Delta``, also
    when the request races with ``close`` or comes after it (``ThreadedEngine`` sees to that)."""

    context_length: int

    def submit(self, request: EngineRequest) -> None: ...

    def busy(self) -> bool:
        """True while any request is queued or running (an idle engine may be unloaded)."""
        ...

    def close(self) -> None: ...


class IncrementalDecoder:
    """Turns a growing list of token ids into text deltas without re-emitting text and without
    ever emitting half of a multi-byte character (the offsets trick of TGI and vLLM)."""

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer
        self.ids: list[int] = []
        self._prefix = 0
        self._read = 0

    def _decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    @property
    def holding(self) -> bool:
        """Some tokens' text is held back (part of a character, or no text yet)."""
        return self._read < len(self.ids)

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        prefix_text = self._decode(self.ids[self._prefix:self._read])
        new_text = self._decode(self.ids[self._prefix:])
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self.ids)
            return new_text[len(prefix_text):]
        return ""

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character at the very end)."""
        prefix_text = self._decode(self.ids[self._prefix:self._read])
        new_text = self._decode(self.ids[self._prefix:])
        self._prefix = self._read = len(self.ids)
        return new_text[len(prefix_text):]


class StopText:
    """Assembles streamed text and cuts it at the first stop string. Text that could be the start
    of a stop string is held back until it is clear, so a stop string never leaks to a client."""

    def __init__(self, stop: Sequence[str] = ()) -> None:
        self.stop = tuple(s for s in stop if s)
        self.text = ""
        self._sent = 0
        self.stopped = False

    @property
    def sent(self) -> int:
        """How many characters of :attr:`text` are sent."""
        return self._sent

    def push(self, delta: str) -> str:
        """Add text; return the part that is safe to send now."""
        if self.stopped or not delta:
            return ""
        if not self.stop:
            self.text += delta
            self._sent = len(self.text)
            return delta
        start = max(0, len(self.text) - max(len(s) for s in self.stop) + 1)
        self.text += delta
        hits = [i for i in (self.text.find(s, start) for s in self.stop) if i >= 0]
        if hits:
            cut = min(hits)
            out = self.text[self._sent:cut]
            self.text = self.text[:cut]
            self._sent = cut
            self.stopped = True
            return out
        end = len(self.text) - self._held()
        out = self.text[self._sent:end]
        self._sent = max(self._sent, end)
        return out

    def _held(self) -> int:
        for k in range(min(len(self.text), max(len(s) for s in self.stop) - 1), 0, -1):
            tail = self.text[-k:]
            if any(s.startswith(tail) for s in self.stop):
                return k
        return 0

    def flush(self) -> str:
        """The held-back tail, once generation ended without completing a stop string."""
        out = self.text[self._sent:]
        self._sent = len(self.text)
        return out


def drain(decoder: IncrementalDecoder, stop: StopText, scores: AnswerLogprobs | None = None) -> str:
    """All text still held back by the decoder and the stop-string scan, at the end of an answer."""
    held = decoder.flush()
    if scores is not None:
        scores.flush(held)
    return stop.push(held) + stop.flush()


def token_text(decoder: IncrementalDecoder, stop: StopText, token: int, *, end_of_turn: bool,
               at_limit: bool, scores: AnswerLogprobs | None = None, scored: Scored | None = None
               ) -> tuple[str, str | None]:
    """The text one sampled token adds to a streamed answer, and ``"stop"`` or ``"length"`` when
    it ends the answer: an end-of-turn token, a completed stop string, or the token or context
    limit reached (``at_limit``). With ``scores``, the token and its ``scored`` log-probs join the
    answer's (the end-of-turn token is not listed); ``scores.take(stop)`` then says which to send."""
    if end_of_turn:
        return drain(decoder, stop, scores), "stop"
    piece = decoder.push(token)
    if scores is not None and scored is not None:
        scores.push(token, scored, piece, holding=decoder.holding)
    text = stop.push(piece)
    if stop.stopped:
        return text, "stop"
    if at_limit:
        return text + drain(decoder, stop, scores), "length"
    return text, None

