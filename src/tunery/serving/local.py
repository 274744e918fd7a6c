"""In-process chat models: ``ChatRun`` (a started generation, streamed or collected),
``EngineChatModel`` (the ChatModel contract over an engine in this process) and
``LocalChatModel``, that contract over the process-wide engine manager for any registered model,
checkpoint or deployment name. The ONNX export an app embeds without the registry
(``tunery.serving.onnx_engine.OnnxChatModel``) is an ``EngineChatModel`` too.

A deployment name brings its policy along: the content filter screens prompts and answers, and
its tokens-per-minute limit books the tokens of every call, wherever the call comes from (the
server, ``tunery chat``, a flow).

:meth:`EngineChatModel.start` does every check (model, context, filter, rate limit) and starts the
generation before it returns, so a caller such as the server can answer an error with the right
status before it commits to a streamed response.
"""

from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING

from tunery.chat import ChatMessage, Completion, CompletionChunk, GenerationParams, TokenLogprob, Usage
from tunery.errors import TuneryError
from tunery.progress import Progress
from tunery.serving.constrained import check, prompt_tools
from tunery.serving.content_filter import AnswerFilter, ContentFilter
from tunery.serving.engine import Delta, EngineRequest
from tunery.serving.logprobs import Spans
from tunery.serving.manager import Target, manager

if TYPE_CHECKING:
    from tunery.serving.deployments import Deployment
    from tunery.serving.ratelimit import Booking


class GenerationFailed(TuneryError):
    """An engine failed on a request (or was closed under it)."""

    status_code = 500
    error_type = "server_error"
    code = "generation_failed"


class ChatRun:
    """A started generation: iterate it (``for`` or, when started with an event loop, ``async
    for``) for ``CompletionChunk``s: choices interleaved, each ending with a ``finish_reason``,
    the last chunk carrying ``usage``. Closing it early, or :meth:`cancel`, stops the work on the
    engine. Chunks carry the log-probabilities of their tokens when the params asked for them;
    the content filter holds those back with the text they belong to."""

    def __init__(self, prompt_tokens: int, model: str, answer_filter: ContentFilter | None,
                 booking: Booking | None, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.requests: list[EngineRequest] = []
        self.prompt_tokens = prompt_tokens
        self.model = model
        self.created = int(time.time())
        self._filter = answer_filter if answer_filter is not None and answer_filter.active else None
        self._filters: dict[int, AnswerFilter] = {}
        self._filtered: dict[int, Spans] = {}  # per choice: the logprobs the filter holds, along its text
        self._booking = booking  # the deployment's rate limit: settled when the run closes
        self._completion: dict[int, int] = {}
        self._open: set[int] = set()
        self._finished = False
        self.finish_reasons: list[str] = []
        if loop is None:
            self._queue: queue.Queue[Delta] = queue.Queue()
            self.emit = self._queue.put
        else:
            # engine thread -> event loop, no thread of our own in between
            self._aqueue: asyncio.Queue[Delta] = asyncio.Queue()
            self.emit = lambda d: loop.call_soon_threadsafe(self._aqueue.put_nowait, d)

    @classmethod
    def submit(cls, target: Target, prompt_ids: list[int], params: GenerationParams, *, model: str,
               answer_filter: ContentFilter | None = None, booking: Booking | None = None,
               loop: asyncio.AbstractEventLoop | None = None, ignore_eos: bool = False) -> ChatRun:
        """Start ``params.n`` choices of an encoded prompt on ``target`` and return their run."""
        run = cls(len(prompt_ids), model, answer_filter, booking, loop)
        try:
            return run.started(target.submit(prompt_ids, params, run.emit, ignore_eos=ignore_eos))
        except BaseException:
            run.close()  # nothing started: the booking's reservation goes back
            raise

    def started(self, requests: list[EngineRequest]) -> ChatRun:
        self.requests = requests
        self._open = {r.index for r in requests}
        self.finish_reasons = ["stop" for _ in requests]
        if self._filter is not None:
            self._filters = {r.index: self._filter.answer() for r in requests}
            self._filtered = {r.index: Spans() for r in requests}
        return self

    @property
    def logprobs(self) -> bool:
        """Whether the choices list their tokens' log-probabilities."""
        return any(r.logprobs is not None for r in self.requests)

    @property
    def completion_tokens(self) -> int:
        return sum(self._completion.values())

    def _chunks(self, d: Delta) -> list[CompletionChunk]:
        """What one engine event means for the caller."""
        self._completion[d.index] = max(self._completion.get(d.index, 0), d.completion_tokens)
        if d.index not in self._open:
            return []  # a choice cut by the content filter still reports its end
        if d.error is not None:
            raise GenerationFailed(f"generation failed: {d.error}") from d.error
        text, finish, logprobs = d.text, d.finish_reason, d.logprobs
        flt = self._filters.get(d.index)
        if flt is not None:
            text = flt.push(text, final=finish is not None)
            held = self._filtered[d.index]
            held.add(logprobs, len(d.text))
            # blocked: only the tokens wholly before the cut, or one that holds the blocked word would list it
            logprobs = self._filter.screen_alternatives(held.release(flt.sent))
            if flt.blocked:
                self.requests[d.index].cancelled.set()
                finish = "content_filter"
        out = [CompletionChunk(text=text, index=d.index, logprobs=logprobs)] if text or logprobs else []
        if finish is not None:
            self._open.discard(d.index)
            self.finish_reasons[d.index] = finish
            out.append(CompletionChunk(finish_reason=finish, index=d.index))  # type: ignore[arg-type]
        return out

    def __iter__(self) -> Iterator[CompletionChunk]:
        try:
            while self._open:
                yield from self._chunks(self._queue.get())
            self._finished = True
            yield CompletionChunk(usage=self.usage)
        finally:
            self.close()

    async def __aiter__(self) -> AsyncIterator[CompletionChunk]:
        try:
            while self._open:
                for chunk in self._chunks(await self._aqueue.get()):
                    yield chunk
            self._finished = True
            yield CompletionChunk(usage=self.usage)
        finally:
            self.close()

    @property
    def usage(self) -> Usage:
        return Usage(self.prompt_tokens, self.completion_tokens)

    def cancel(self) -> None:
        for r in self.requests:
            r.cancelled.set()

    def close(self) -> None:
        """Stop unfinished work and book the completion tokens against the deployment's limit."""
        if not self._finished:
            self.cancel()
        if self._booking is not None:
            from tunery.serving.ratelimit import limiter

            limiter.settle(self._booking, self.completion_tokens)
            self._booking = None

    def _completion_of(self, texts: list[str], logprobs: list[list[TokenLogprob]]) -> Completion:
        return Completion(text=texts[0], finish_reason=self.finish_reasons[0],  # type: ignore[arg-type]
                          usage=self.usage, model=self.model, choices=tuple(texts),
                          logprobs=tuple(tuple(lp) for lp in logprobs) if self.logprobs else None)

    def collect(self) -> Completion:
        """Run to the end; ``finish_reasons`` then holds every choice's reason."""
        texts, logprobs = ["" for _ in self.requests], [[] for _ in self.requests]
        for chunk in self:
            texts[chunk.index] += chunk.text
            logprobs[chunk.index] += chunk.logprobs
        return self._completion_of(texts, logprobs)

    async def acollect(self) -> Completion:
        texts, logprobs = ["" for _ in self.requests], [[] for _ in self.requests]
        async for chunk in self:
            texts[chunk.index] += chunk.text
            logprobs[chunk.index] += chunk.logprobs
        return self._completion_of(texts, logprobs)


class EngineChatModel:
    """The ChatModel contract over an engine in this process. A subclass says which ``Target``
    serves it (:meth:`target`) and, by overriding :meth:`start`, which policy applies."""

    name: str
    can_stream = True
    parallel_requests = 8  # the engine batches concurrent requests

    def target(self) -> Target:
        raise NotImplementedError

    def start(self, messages: Sequence[ChatMessage], params: GenerationParams, *, ignore_eos: bool = False,
              loop: asyncio.AbstractEventLoop | None = None) -> ChatRun:
        """Check everything, start generating, and return the run to iterate. With ``loop``, the
        run is iterated with ``async for`` on that event loop."""
        check(params)
        target = self.target()
        return ChatRun.submit(target, target.encode(messages, prompt_tools(params)), params, model=self.name,
                              loop=loop, ignore_eos=ignore_eos)

    def count_tokens(self, messages: Sequence[ChatMessage], tools: list[dict] | None = None) -> int:
        """Prompt tokens of ``messages`` (and ``tools``) through this model's chat template."""
        return len(self.target().encode(messages, tools))

    def generate(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Completion:
        return self.start(messages, params).collect()

    def stream(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Iterator[CompletionChunk]:
        run = self.start(messages, params)
        try:
            yield from run
        finally:
            run.close()


class LocalChatModel(EngineChatModel):
    """A registered model, checkpoint or deployment, served in this process, at ``precision``
    (None: a deployment's own, else the process default; see ``tunery.serving.manager``)."""

    def __init__(self, name: str, *, precision: str | None = None) -> None:
        self.name = name
        self.precision = precision

    def _resolve(self, progress: Progress | None = None) -> tuple[Deployment | None, Target]:
        """The deployment this name is (or None) and the target serving it."""
        from tunery.serving import deployments

        dep = deployments.find(self.name)
        precision = self.precision or (dep.precision if dep is not None else None)
        return dep, manager().target(dep.model if dep is not None else self.name, precision=precision,
                                     progress=progress)

    def check_known(self) -> None:
        """Raise the NotFound of a name that is no deployment and no model, without loading anything."""
        from tunery.models import registry
        from tunery.serving import deployments

        if deployments.find(self.name) is None:
            registry.get(self.name)

    def load(self, progress: Progress | None = None) -> Target:
        """Resolve and load now (building the compiled copy if needed), not during the first answer."""
        return self._resolve(progress)[1]

    def target(self) -> Target:
        return self._resolve()[1]

    def start(self, messages: Sequence[ChatMessage], params: GenerationParams, *, ignore_eos: bool = False,
              loop: asyncio.AbstractEventLoop | None = None) -> ChatRun:
        """:meth:`EngineChatModel.start`, under the deployment's policy when the name is a deployment."""
        from tunery.serving.ratelimit import limiter

        check(params)
        dep, target = self._resolve()
        flt = dep.filter() if dep is not None else None
        tools = prompt_tools(params)
        if flt is not None:
            flt.check_prompt(messages, tools)
        prompt_ids = target.encode(messages, tools)
        booking = None
        if dep is not None and (dep.tpm or dep.rpm):
            # the most the answer may take is reserved too (given back as the run ends): admitted on
            # their prompts alone, concurrent requests could write many times the limit between them
            booking = limiter.acquire(dep.name, dep.tpm, len(prompt_ids), rpm=dep.rpm,
                                      reserve=target.max_new_tokens(prompt_ids, params) * max(1, params.n))
        return ChatRun.submit(target, prompt_ids, params, model=self.name, answer_filter=flt, booking=booking,
                              loop=loop, ignore_eos=ignore_eos)

    def __repr__(self) -> str:
        return f"LocalChatModel({self.name!r})"
