"""Chat backends that are not an in-process engine: any OpenAI-compatible endpoint over HTTP, and
a scripted fake for tests where the model's words do not matter."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tunery.chat import ChatMessage, Completion, CompletionChunk, GenerationParams, Usage
from tunery.chat_template import answer_text, tool_call_text
from tunery.errors import InvalidInput, OfflineError, TuneryError


def _message(m: ChatMessage) -> dict[str, Any]:
    """A message as OpenAI's API takes it: no ``weight`` (tunery's, for training), and ``content``
    null on an assistant turn that only calls tools."""
    d = m.to_dict()
    d.pop("weight", None)
    if m.tool_calls and not m.content:
        d["content"] = None
    return d


def _payload(model: str, messages: Sequence[ChatMessage], params: GenerationParams, stream: bool) -> dict:
    if params.logprobs:  # a Completion from here would have nowhere to put the scores
        raise InvalidInput("logprobs are not sent to a remote endpoint by tunery's client", param="logprobs",
                           hint="ask the endpoint directly with the openai SDK, or use a local model")
    body: dict = {"model": model, "messages": [_message(m) for m in messages],
                  "temperature": params.temperature, "top_p": params.top_p, "n": params.n, "stream": stream}
    if params.tools:
        body["tools"] = list(params.tools)
        if params.tool_choice is not None:
            body["tool_choice"] = params.tool_choice
        if not params.parallel_tool_calls:
            body["parallel_tool_calls"] = False
        if params.tool_call_threshold is not None:  # tunery's extension: sent only when asked for
            body["tool_call_threshold"] = params.tool_call_threshold
    if params.max_tokens is not None:
        body["max_tokens"] = params.max_tokens
    if params.stop:
        body["stop"] = list(params.stop)
    if params.seed is not None:
        body["seed"] = params.seed
    if params.response_format is not None:
        body["response_format"] = params.response_format
    if params.logit_bias:
        body["logit_bias"] = dict(params.logit_bias)
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(params, name):
            body[name] = getattr(params, name)
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def _finish(reason: str | None) -> str | None:
    """OpenAI's ``tool_calls`` (and legacy ``function_call``) finish is the calls in the text here:
    a reader that finds them says ``tool_calls`` again."""
    return "stop" if reason in ("tool_calls", "function_call") else reason


@dataclass
class OpenAIChatModel:
    """Any OpenAI-compatible ``/v1/chat/completions`` endpoint (tunery serve, OpenAI, Azure, vLLM...).
    Tools are sent as given; the calls that come back are written into the answer's text as
    ``<tool_call>`` blocks, as tunery's own models write them (:func:`tunery.chat_template.answer_text`),
    the one form every reader of a :class:`Completion` parses (the server's ``tool_calls``, the
    ``tool_calls`` evaluator)."""

    model: str
    base_url: str
    api_key: str | None = None
    timeout: float = 600.0
    can_stream: bool = True
    name: str = ""
    parallel_requests: int = 8

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self.name = self.name or self.model

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _error(self, status: int, text: str) -> TuneryError:
        try:
            msg = json.loads(text)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            msg = text[:300]
        return TuneryError(f"{self.base_url} answered {status}: {msg}", code="upstream_error")

    def generate(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Completion:
        import httpx

        try:
            r = httpx.post(f"{self.base_url}/chat/completions", json=_payload(self.model, messages, params, False),
                           headers=self._headers(), timeout=self.timeout)
        except httpx.HTTPError as e:
            raise OfflineError(f"cannot reach {self.base_url}: {e}", hint="is the server running?") from e
        if r.status_code != 200:
            raise self._error(r.status_code, r.text)
        data = r.json()
        choices = tuple(answer_text(c["message"].get("content") or "", c["message"].get("tool_calls") or [])
                        for c in data["choices"])
        u = data.get("usage") or {}
        return Completion(text=choices[0], finish_reason=_finish(data["choices"][0].get("finish_reason")) or "stop",
                          usage=Usage(u.get("prompt_tokens", 0), u.get("completion_tokens", 0)),
                          model=data.get("model", self.model), choices=choices)

    def stream(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Iterator[CompletionChunk]:
        import httpx

        try:
            with httpx.stream("POST", f"{self.base_url}/chat/completions", headers=self._headers(),
                              json=_payload(self.model, messages, params, True), timeout=self.timeout) as r:
                if r.status_code != 200:
                    raise self._error(r.status_code, r.read().decode(errors="replace"))
                wrote: dict[int, bool] = {}  # per choice, whether any text came yet
                calls: dict[int, dict[int, dict[str, Any]]] = {}  # per choice, its calls by their index
                for line in r.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    obj = json.loads(data)
                    usage = obj.get("usage")
                    for c in obj.get("choices") or []:
                        i, delta = c.get("index", 0), c.get("delta") or {}
                        for piece in delta.get("tool_calls") or []:  # a call comes in pieces: name, then arguments
                            call = calls.setdefault(i, {}).setdefault(piece.get("index", 0), {"name": "", "arguments": ""})
                            fn = piece.get("function") or {}
                            call["name"] += fn.get("name") or ""
                            call["arguments"] += fn.get("arguments") or ""
                        text = delta.get("content") or ""
                        finish = c.get("finish_reason")
                        if finish and calls.get(i):  # the calls whole, as the text's last piece (answer_text)
                            blocks = tool_call_text([{"function": v} for _, v in sorted(calls.pop(i).items())])
                            text = f"{text}\n{blocks}" if wrote.get(i) or text else blocks
                        wrote[i] = wrote.get(i, False) or bool(text)
                        yield CompletionChunk(text=text, finish_reason=_finish(finish), index=i)
                    if usage:
                        yield CompletionChunk(usage=Usage(usage.get("prompt_tokens", 0),
                                                          usage.get("completion_tokens", 0)))
        except httpx.HTTPError as e:
            raise OfflineError(f"cannot reach {self.base_url}: {e}", hint="is the server running?") from e


@dataclass
class ScriptedChatModel:
    """A fake model for tests: answers with ``reply(messages)``, or cycles through ``replies``.
    It records every request in ``calls``."""

    name: str = "scripted"
    replies: list[str] = field(default_factory=lambda: ["OK"])
    reply: Callable[[Sequence[ChatMessage]], str] | None = None
    can_stream: bool = True
    parallel_requests: int = 1
    calls: list[tuple[tuple[ChatMessage, ...], GenerationParams]] = field(default_factory=list)

    def _answer(self, messages: Sequence[ChatMessage], params: GenerationParams) -> tuple[str, str]:
        self.calls.append((tuple(messages), params))
        text = self.reply(messages) if self.reply else self.replies[(len(self.calls) - 1) % len(self.replies)]
        finish = "stop"
        for s in params.stop:
            if s and s in text:
                text = text[: text.index(s)]
        words = text.split(" ")
        if params.max_tokens is not None and len(words) > params.max_tokens:
            text, finish = " ".join(words[: params.max_tokens]), "length"
        return text, finish

    def generate(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Completion:
        text, finish = self._answer(messages, params)
        prompt = sum(len(m.content.split()) for m in messages)
        return Completion(text=text, finish_reason=finish,  # type: ignore[arg-type]
                          usage=Usage(prompt, len(text.split())), model=self.name, choices=(text,))

    def stream(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Iterator[CompletionChunk]:
        text, finish = self._answer(messages, params)
        words = text.split(" ")
        for i, w in enumerate(words):
            yield CompletionChunk(text=w if i == 0 else " " + w)
        yield CompletionChunk(finish_reason=finish)  # type: ignore[arg-type]
        yield CompletionChunk(usage=Usage(sum(len(m.content.split()) for m in messages), len(words)))


def endpoint_from_spec(spec: str) -> OpenAIChatModel | None:
    """Parse ``MODEL@http://host:port/v1`` (key from ``OPENAI_API_KEY`` or ``TUNERY_API_KEY``);
    None if ``spec`` is a plain model name."""
    if "@http://" not in spec and "@https://" not in spec:
        return None
    model, url = spec.split("@", 1)
    if not model:
        raise InvalidInput(f"endpoint spec {spec!r} lacks a model name before '@'", param="model")
    key = os.environ.get("TUNERY_ENDPOINT_API_KEY") or os.environ.get("OPENAI_API_KEY") or os.environ.get("TUNERY_API_KEY")
    return OpenAIChatModel(model=model, base_url=url, api_key=key, name=spec)
