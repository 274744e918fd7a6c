"""``POST /v1/chat/completions``: plain and streamed (server-sent ``chat.completion.chunk``
events ending with ``data: [DONE]``), with ``n`` choices, seeds, stop strings and exact usage,
``tools``/``tool_choice``/``parallel_tool_calls`` and ``response_format`` (held by constrained
decoding, ``tunery.serving.constrained``).

Tool calls: an answer's ``<tool_call>`` blocks become ``message.tool_calls`` (ids ``call_...``,
``finish_reason`` "tool_calls"); a block that is not a valid call of a given function stays plain
content. Streamed, content is sent as it comes until a block opens; each call is then sent once its
block closes, as OpenAI's deltas: ``index``, ``id``, ``type`` and ``function.name`` first, then the
``arguments``. A choice's role comes with its first delta, with content null when that is a call, so
the SDK's streamed message is the plain one (content ``None``, not ``""``).

An answer cut by ``max_tokens`` (``finish_reason`` "length") in the middle of a block never shows
the template's markup: the cut block is left out (the content is the text before it, null when there
is none), as are the calls it was writing; calls whose blocks closed before the cut are kept. Streamed,
the same: the held block is dropped at the end.

Log-probabilities (``logprobs``, ``top_logprobs``): each choice's ``logprobs.content`` lists its
answer's tokens as OpenAI does (``token``, ``logprob``, ``bytes``, ``top_logprobs``; values from the
model's raw logits, before temperature, top-p or a grammar: ``tunery.serving.logprobs``), without
the end-of-turn token; streamed, each content chunk lists the tokens its text completes (the role
and finish chunks have ``logprobs`` null). The ``bytes`` of the listed tokens join to the UTF-8 of
the content. Where a stop string cuts the text, the token it starts in is listed whole (its bytes run
past the content by the part of the stop string it holds); tokens after it are not. Under tools, the
tokens of the content written before a choice's first call are listed; a call's own tokens never
are, and a choice whose answer is only calls (content null) has ``logprobs.content`` null.

``logit_bias``, ``presence_penalty`` and ``frequency_penalty`` act as OpenAI defines them, on both
engines, before a grammar's mask (``tunery.serving.penalties``); log-probabilities stay the raw ones.

Every check happens before the response starts, so a bad request always gets its own status
code; an error in the middle of a stream is sent as a final ``data: {"error": ...}`` event."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from tunery.chat import ChatMessage, Completion, GenerationParams, Role, TokenLogprob
from tunery.chat_template import TOOL_CALL_CLOSE, TOOL_CALL_OPEN
from tunery.data.issues import parse_json
from tunery.errors import InvalidInput, TuneryError
from tunery.serving.constrained import prompt_tools, split_answer
from tunery.serving.local import ChatRun, LocalChatModel
from tunery.serving.logprobs import Spans

log = logging.getLogger("tunery.server")
router = APIRouter()

FINGERPRINT = "fp_tunery"


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    type: str
    text: str | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[Any] | None = None
    tool_call_id: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The OpenAI chat-completion body. Unknown fields are ignored, as OpenAI-compatible servers
    do; fields that would change the answer in ways we cannot honour are refused."""

    model_config = ConfigDict(extra="allow", strict=True)
    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0, le=2, allow_inf_nan=False)
    top_p: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    presence_penalty: float | None = Field(None, ge=-2, le=2, allow_inf_nan=False)
    frequency_penalty: float | None = Field(None, ge=-2, le=2, allow_inf_nan=False)
    logit_bias: dict[str, float] | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = Field(None, ge=1, le=16)  # null (the SDK sends n=None so) means 1, as at OpenAI
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    ignore_eos: bool = False  # vLLM's extension: keep going past end-of-turn (benchmarks)
    tools: list[Any] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    functions: list[Any] | None = None
    function_call: str | dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    modalities: list[str] | None = None
    response_format: dict[str, Any] | None = None
    # tunery's extension: call a tool under auto only this sure (None: the model's own threshold)
    tool_call_threshold: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)


def _messages(body: ChatRequest) -> list[ChatMessage]:
    out = []
    called: set[str] = set()  # ids of the calls made so far, which tool messages answer
    for i, m in enumerate(body.messages):
        if m.role == "function":
            raise InvalidInput(f"messages[{i}]: role 'function' is the legacy form; answer a tool call with "
                               "role 'tool' and its tool_call_id", param=f"messages[{i}].role")
        if m.role == "tool":
            if not called:
                raise InvalidInput(f"messages[{i}]: a tool message must answer a tool call of an earlier "
                                   "assistant message", param=f"messages[{i}].role")
            if m.tool_call_id is None:
                raise InvalidInput(f"messages[{i}]: tool_call_id is required on a tool message: the id of the "
                                   "call it answers", param=f"messages[{i}].tool_call_id")
            if m.tool_call_id not in called:
                raise InvalidInput(f"messages[{i}]: tool_call_id {m.tool_call_id!r} answers no earlier tool call",
                                   param=f"messages[{i}].tool_call_id")
        calls = _tool_calls(i, m) if m.tool_calls else None
        called.update(c["id"] for c in calls or ())
        if m.content is None:
            if m.role != "assistant":
                raise InvalidInput(f"messages[{i}]: content is required for role {m.role!r}",
                                   param=f"messages[{i}].content")
            text = ""
        elif isinstance(m.content, str):
            text = m.content
        else:
            parts = []
            for j, part in enumerate(m.content):
                if part.type != "text":
                    raise InvalidInput(f"messages[{i}].content[{j}]: only text parts are supported, not "
                                       f"{part.type!r}", param=f"messages[{i}].content[{j}].type")
                if part.text is None:
                    raise InvalidInput(f"messages[{i}].content[{j}]: a text part needs its text: "
                                       '{"type": "text", "text": "..."}', param=f"messages[{i}].content[{j}].text")
                parts.append(part.text)
            text = "".join(parts)
        role = Role.SYSTEM if m.role == "developer" else Role(m.role)
        out.append(ChatMessage(role, text, tool_calls=calls,
                               tool_call_id=m.tool_call_id if m.role == "tool" else None))
    return out


def _tool_calls(i: int, m: Message) -> tuple[dict[str, Any], ...]:
    """An assistant message's ``tool_calls``, checked to be OpenAI's shape."""
    if m.role != "assistant":
        raise InvalidInput(f"messages[{i}]: only assistant messages carry tool_calls", param=f"messages[{i}].tool_calls")
    out = []
    for j, call in enumerate(m.tool_calls or ()):
        where = f"messages[{i}].tool_calls[{j}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not (isinstance(call, dict) and isinstance(call.get("id"), str) and call.get("type", "function") == "function"
                and isinstance(fn, dict) and isinstance(fn.get("name"), str) and isinstance(fn.get("arguments"), str)):
            raise InvalidInput(f'{where} must be {{"id": ..., "type": "function", "function": {{"name": ..., '
                               '"arguments": "<a JSON string>"}}}}', param=where)
        if (problem := parse_json(fn["arguments"])[1]) is not None:
            raise InvalidInput(f"{where}.function.arguments is not valid JSON: {problem}",
                               param=f"{where}.function.arguments")
        out.append({"id": call["id"], "type": "function",
                    "function": {"name": fn["name"], "arguments": fn["arguments"]}})
    return tuple(out)


def _params(body: ChatRequest) -> GenerationParams:
    if body.functions or body.function_call is not None:
        raise InvalidInput("functions and function_call are the legacy form of tools: send tools "
                           '([{"type": "function", "function": {...}}]) and tool_choice instead',
                           param="functions" if body.functions else "function_call")
    # OpenAI's default (null, ["text"]) is what SDKs and tools send unasked: that passes
    if body.modalities is not None and body.modalities != ["text"]:
        raise InvalidInput(f"modalities {json.dumps(body.modalities)} are not supported: this server answers with text "
                           'only (["text"])', param="modalities")
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    if len(stop) > 4:
        raise InvalidInput("stop takes at most 4 sequences", param="stop")
    if body.seed is not None and not -(2**63) <= body.seed < 2**63:
        raise InvalidInput("seed must fit in 64 bits", param="seed")
    return GenerationParams(max_tokens=body.max_completion_tokens or body.max_tokens,
                            temperature=1.0 if body.temperature is None else body.temperature,
                            top_p=1.0 if body.top_p is None else body.top_p,
                            stop=tuple(s for s in stop if s), seed=body.seed, n=body.n or 1,
                            tools=tuple(body.tools or ()), tool_choice=body.tool_choice,
                            parallel_tool_calls=body.parallel_tool_calls is not False,
                            response_format=body.response_format, logprobs=bool(body.logprobs),
                            top_logprobs=body.top_logprobs or 0, logit_bias=body.logit_bias or None,
                            presence_penalty=body.presence_penalty or 0.0,
                            frequency_penalty=body.frequency_penalty or 0.0,
                            tool_call_threshold=body.tool_call_threshold)


async def _unless_hung_up(request: Request, work: Awaitable[Completion]) -> Completion | None:
    """``work``'s completion, or None as soon as the client hangs up first. A streamed answer stops
    then (its response watches for it); a plain one must too, or each SDK timeout, which the SDK
    retries twice by default, would leave a whole generation running behind it."""
    async def hung_up() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    task, watch = asyncio.ensure_future(work), asyncio.ensure_future(hung_up())
    try:
        done, _ = await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task})  # the run's own clean-up, before the caller closes it
    return task.result() if task in done else None


@router.post("/chat/completions", response_model=None)
async def chat_completions(body: ChatRequest, request: Request) -> dict[str, Any] | Response:
    messages, params = _messages(body), _params(body)
    # the checks (and a first load of the model) block: they run on a worker thread; the tokens
    # then come straight from the engine thread to this event loop
    run = await run_in_threadpool(LocalChatModel(body.model).start, messages, params, ignore_eos=body.ignore_eos,
                                  loop=asyncio.get_running_loop())
    cid = "chatcmpl-" + secrets.token_hex(12)
    tools = params if prompt_tools(params) else None
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(_events(run, cid, include_usage, tools), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    try:
        completion = await _unless_hung_up(request, run.acollect())
    finally:
        run.close()  # stops the generation when the client left before it ended
    if completion is None:  # no one reads this; the access log shows nginx's "client closed request"
        return Response(status_code=499)
    choices = []
    for i, text in enumerate(completion.choices):
        content, calls = _split_calls(text, tools, cut=run.finish_reasons[i] == "length")
        # null when the answer was calls, or a call max_tokens cut off: there is no text to show
        message: dict[str, Any] = {"role": "assistant", "content": content if content or not text else None,
                                   "refusal": None}
        if calls:
            message["tool_calls"] = calls
        logprobs = None if completion.logprobs is None else _listed(completion.logprobs[i], text, message["content"],
                                                                     bool(calls))
        choices.append({"index": i, "message": message, "logprobs": logprobs,
                        "finish_reason": _finish(run.finish_reasons[i], bool(calls))})
    return {"id": cid, "object": "chat.completion", "created": run.created, "model": run.model,
            "system_fingerprint": FINGERPRINT, "choices": choices, "usage": completion.usage.to_openai()}


def _logprobs(entries: tuple[TokenLogprob, ...] | None) -> dict[str, Any]:
    """OpenAI's ``logprobs`` object of a choice, or of a chunk's choice."""
    return {"content": None if entries is None else [e.to_openai() for e in entries], "refusal": None}


def _listed(entries: tuple[TokenLogprob, ...], text: str, content: str | None, called: bool) -> dict[str, Any]:
    """A plain answer's ``logprobs``: every token of an answer shown as written; under tools, those of
    the text before the first call (or before the block ``max_tokens`` cut); null content when
    there is no text to show."""
    if content is None:
        return _logprobs(None)
    if called:
        return _logprobs(Spans().add_tokens(entries).release(len(text[:text.find(TOOL_CALL_OPEN)].encode())))
    if content != text:
        return _logprobs(Spans().add_tokens(entries).release(len(content.encode())))
    return _logprobs(entries)


def _split_calls(text: str, tools: GenerationParams | None, *, cut: bool = False
                 ) -> tuple[str, list[dict[str, Any]]]:
    """An answer's content and tool calls: no calls unless tools were offered, and none at all when
    one of them is not a valid call of an offered function (then the whole answer is content).
    ``cut``: the answer ended at ``max_tokens``, and a block it was writing is left out."""
    if tools is None:
        return text, []
    content, calls = split_answer(text, tools)
    return (_before_cut_block(content) if cut else content), calls


def _opening_tail(text: str) -> int:
    """How many of the last characters of ``text`` may be the start of a ``<tool_call>`` tag."""
    return next((k for k in range(min(len(text), len(TOOL_CALL_OPEN) - 1), 0, -1)
                 if TOOL_CALL_OPEN.startswith(text[-k:])), 0)


def _before_cut_block(text: str) -> str:
    """``text`` without the block it ends in, cut before its closing tag (or the start of its
    opening tag): what a streamed choice holds back, and drops, at a "length" finish."""
    start = text.rfind(TOOL_CALL_OPEN)
    if start >= 0 and TOOL_CALL_CLOSE not in text[start:]:
        return text[:start]
    return text[:len(text) - _opening_tail(text)]


def _finish(reason: str, called: bool) -> str:
    return "tool_calls" if called and reason == "stop" else reason


class _CallStream:
    """One streamed choice under tools: content passes through until a ``<tool_call>`` block may
    be opening; each block is sent as a call once it closes (or as content, if it is not a valid
    call)."""

    def __init__(self, tools: GenerationParams) -> None:
        self.tools = tools
        self.held = ""
        self.calls = 0

    def push(self, text: str) -> list[dict[str, Any]]:
        self.held += text
        out: list[dict[str, Any]] = []
        while True:
            start = self.held.find(TOOL_CALL_OPEN)
            if start < 0:
                keep = _opening_tail(self.held)
                if self.calls and not self.held[:len(self.held) - keep].strip("\n"):
                    keep = len(self.held)  # after a call, newlines are held: they may come before the next
                out += self._content(self.held[:len(self.held) - keep])
                self.held = self.held[len(self.held) - keep:]
                return out
            out += self._content(self.held[:start] if not self.calls else self.held[:start].strip("\n"))
            self.held = self.held[start:]
            end = self.held.find(TOOL_CALL_CLOSE)
            if end < 0:
                return out
            end += len(TOOL_CALL_CLOSE)
            out += self._block(self.held[:end])
            self.held = self.held[end:]

    def flush(self, *, cut: bool = False) -> list[dict[str, Any]]:
        """What is held at the end: a block (or the start of its tag), sent as a call if it is one;
        else as content, unless the answer was ``cut`` (by ``max_tokens``), as :func:`_split_calls`."""
        held, self.held = self.held, ""
        out = (self._block(held) if held.startswith(TOOL_CALL_OPEN)
               else self._content(held.strip("\n") if self.calls else held))
        return [] if cut and not any("tool_calls" in d for d in out) else out

    def _content(self, text: str) -> list[dict[str, Any]]:
        return [{"content": text}] if text else []

    def _block(self, block: str) -> list[dict[str, Any]]:
        content, calls = _split_calls(block, self.tools)
        if len(calls) != 1 or content:
            return self._content(block)
        call, index = calls[0], self.calls
        self.calls += 1
        return [{"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                 "function": {"name": call["function"]["name"], "arguments": ""}}]},
                {"tool_calls": [{"index": index, "function": {"arguments": call["function"]["arguments"]}}]}]


class _CallLogprobs:
    """One streamed choice's logprobs under tools: its tokens go with the content it sends before
    its first call (that content is the answer as written, so the tokens' bytes measure it)."""

    def __init__(self) -> None:
        self.spans = Spans()
        self.shown = 0  # bytes of content sent
        self.called = False

    def of(self, delta: dict[str, Any]) -> tuple[TokenLogprob, ...] | None:
        """The tokens to send with ``delta`` (None: it lists none, a call or what follows one)."""
        if "tool_calls" in delta:
            self.called = True
        if self.called:
            return None
        self.shown += len(delta.get("content", "").encode())
        return self.spans.release(self.shown)

    def rest(self) -> tuple[TokenLogprob, ...]:
        """At the end of an answer that made no call: the tokens that added no text of their own."""
        return () if self.called else self.spans.release(self.spans.end)


def _sse(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False, separators=(',', ':'))}\n\n"


async def _events(run: ChatRun, cid: str, include_usage: bool, tools: GenerationParams | None
                  ) -> AsyncIterator[str]:
    head = {"id": cid, "object": "chat.completion.chunk", "created": run.created, "model": run.model,
            "system_fingerprint": FINGERPRINT}
    extra = {"usage": None} if include_usage else {}

    def chunk(index: int, delta: dict[str, Any], finish: str | None,
              logprobs: tuple[TokenLogprob, ...] | None = None) -> str:
        return _sse({**head, "choices": [{"index": index, "delta": delta,
                                          "logprobs": None if logprobs is None else _logprobs(logprobs),
                                          "finish_reason": finish}], **extra})

    streams = {r.index: _CallStream(tools) for r in run.requests} if tools is not None else {}
    scored = {r.index: _CallLogprobs() for r in run.requests} if tools is not None and run.logprobs else {}
    opened: set[int] = set()  # the choices whose first delta, which names the role, is sent
    wrote: set[int] = set()  # the choices the model wrote any text for

    def delta(index: int, d: dict[str, Any], logprobs: tuple[TokenLogprob, ...] | None = None) -> str:
        if index not in opened:
            # as OpenAI's: content "" opens a text answer, null one that starts with a call (and
            # one whose only text, a call cut by max_tokens, is left out), as in the plain answer
            opened.add(index)
            empty = None if "tool_calls" in d or index in wrote else ""
            d = {"role": "assistant", "content": empty, **d}
        return chunk(index, d, None, logprobs)

    def sent(index: int, deltas: list[dict[str, Any]]) -> list[str]:
        """Under tools, each delta with the logprobs of the content it sends."""
        lp = scored.get(index)
        return [delta(index, d, lp.of(d) if lp is not None else None) for d in deltas]

    try:
        if tools is None:  # without tools, every answer is text: its role goes at once
            for r in run.requests:
                yield delta(r.index, {})
        async for c in run:
            calls = streams.get(c.index)
            if c.usage is not None:
                if include_usage:
                    yield _sse({**head, "choices": [], "usage": c.usage.to_openai()})
            elif c.finish_reason is not None:
                if calls is not None:
                    cut = c.finish_reason == "length"
                    for line in sent(c.index, calls.flush(cut=cut)):
                        yield line
                    rest = scored[c.index].rest() if c.index in scored and not cut else ()
                    if rest:
                        yield delta(c.index, {"content": ""}, rest)
                if c.index not in opened:
                    yield delta(c.index, {})
                yield chunk(c.index, {}, _finish(c.finish_reason, calls is not None and calls.calls > 0))
            elif c.text or c.logprobs:
                if c.text:
                    wrote.add(c.index)
                if calls is None:
                    yield delta(c.index, {"content": c.text}, c.logprobs if run.logprobs else None)
                    continue
                if c.index in scored:
                    scored[c.index].spans.add_tokens(c.logprobs)
                for line in sent(c.index, calls.push(c.text)):
                    yield line
        yield "data: [DONE]\n\n"
    except TuneryError as e:
        yield _sse(e.to_openai())
    except Exception as e:  # the status line is already sent: say it in the stream, and log it
        log.exception("stream failed")
        yield _sse({"error": {"message": f"The server had an error while streaming ({type(e).__name__}).",
                              "type": "server_error", "param": None, "code": None}})
    finally:
        run.close()
