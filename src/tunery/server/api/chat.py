"""``POST /v1/chat/completions``: plain and streamed (server-sent ``chat.completion.chunk``
events ending with ``data: [DONE]``), with ``n`` choices, seeds, stop strings and exact usage.

Every check happens before the response starts, so a bad request always gets its own status
code; an error in the middle of a stream is sent as a final ``data: {"error": ...}`` event."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from tunery.chat import ChatMessage, GenerationParams, Role
from tunery.errors import InvalidInput, TuneryError
from tunery.serving.local import ChatRun, LocalChatModel

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


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The OpenAI chat-completion body. Unknown fields are ignored, as OpenAI-compatible servers
    do; fields that would change the answer in ways we cannot honour are refused."""

    model_config = ConfigDict(extra="allow", strict=True)
    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=16)
    stream: bool = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = False  # vLLM's extension: keep going past end-of-turn (benchmarks)
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    logprobs: bool | None = None
    response_format: dict[str, Any] | None = None


def _messages(body: ChatRequest) -> list[ChatMessage]:
    out = []
    for i, m in enumerate(body.messages):
        if m.role in ("tool", "function"):
            raise InvalidInput(f"messages[{i}]: role {m.role!r} is not supported (no tool calling)",
                               param=f"messages[{i}].role")
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
                if part.type != "text" or part.text is None:
                    raise InvalidInput(f"messages[{i}].content[{j}]: only text parts are supported, not "
                                       f"{part.type!r}", param=f"messages[{i}].content[{j}].type")
                parts.append(part.text)
            text = "".join(parts)
        role = Role.SYSTEM if m.role == "developer" else Role(m.role)
        out.append(ChatMessage(role, text))
    return out


def _params(body: ChatRequest) -> GenerationParams:
    if body.tools or body.functions:
        raise InvalidInput("tools and functions are not supported by this server", param="tools")
    if body.logprobs:
        raise InvalidInput("logprobs are not supported by this server", param="logprobs")
    if body.response_format and body.response_format.get("type", "text") != "text":
        raise InvalidInput("only response_format {\"type\": \"text\"} is supported", param="response_format")
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    if len(stop) > 4:
        raise InvalidInput("stop takes at most 4 sequences", param="stop")
    if body.seed is not None and not -(2**63) <= body.seed < 2**63:
        raise InvalidInput("seed must fit in 64 bits", param="seed")
    return GenerationParams(max_tokens=body.max_completion_tokens or body.max_tokens,
                            temperature=1.0 if body.temperature is None else body.temperature,
                            top_p=1.0 if body.top_p is None else body.top_p,
                            stop=tuple(s for s in stop if s), seed=body.seed, n=body.n)


@router.post("/chat/completions", response_model=None)
async def chat_completions(body: ChatRequest) -> dict[str, Any] | StreamingResponse:
    messages, params = _messages(body), _params(body)
    # the checks (and a first load of the model) block: they run on a worker thread; the tokens
    # then come straight from the engine thread to this event loop
    run = await run_in_threadpool(LocalChatModel(body.model).start, messages, params, ignore_eos=body.ignore_eos,
                                  loop=asyncio.get_running_loop())
    cid = "chatcmpl-" + secrets.token_hex(12)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(_events(run, cid, include_usage), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    try:
        completion = await run.acollect()
    finally:
        run.close()
    return {"id": cid, "object": "chat.completion", "created": run.created, "model": run.model,
            "system_fingerprint": FINGERPRINT,
            "choices": [{"index": i, "message": {"role": "assistant", "content": text, "refusal": None},
                         "logprobs": None, "finish_reason": run.finish_reasons[i]}
                        for i, text in enumerate(completion.choices)],
            "usage": completion.usage.to_openai()}


def _sse(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False, separators=(',', ':'))}\n\n"


async def _events(run: ChatRun, cid: str, include_usage: bool) -> AsyncIterator[str]:
    head = {"id": cid, "object": "chat.completion.chunk", "created": run.created, "model": run.model,
            "system_fingerprint": FINGERPRINT}
    extra = {"usage": None} if include_usage else {}

    def chunk(index: int, delta: dict[str, Any], finish: str | None) -> str:
        return _sse({**head, "choices": [{"index": index, "delta": delta, "logprobs": None,
                                          "finish_reason": finish}], **extra})

    try:
        for r in run.requests:
            yield chunk(r.index, {"role": "assistant", "content": ""}, None)
        async for c in run:
            if c.usage is not None:
                if include_usage:
                    yield _sse({**head, "choices": [], "usage": c.usage.to_openai()})
            elif c.finish_reason is not None:
                yield chunk(c.index, {}, c.finish_reason)
            elif c.text:
                yield chunk(c.index, {"content": c.text}, None)
        yield "data: [DONE]\n\n"
    except TuneryError as e:
        yield _sse(e.to_openai())
    except Exception as e:  # the status line is already sent: say it in the stream, and log it
        log.exception("stream failed")
        yield _sse({"error": {"message": f"The server had an error while streaming ({type(e).__name__}).",
                              "type": "server_error", "param": None, "code": None}})
    finally:
        run.close()
