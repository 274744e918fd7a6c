"""An OpenAI-compatible endpoint that lives inside the app: an ``httpx`` transport that answers
``POST /v1/chat/completions`` (plain and streamed) from an ONNX export run by tunery's ONNX Runtime
engine. The app talks to it with the same ``openai`` SDK it uses for the cloud, but nothing leaves
the device and no server runs."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx

from tunery.chat import Conversation, GenerationParams
from tunery.errors import TuneryError
from tunery.serving.local import ChatRun
from tunery.serving.onnx_engine import OnnxChatModel


class OnDeviceTransport(httpx.BaseTransport):
    def __init__(self, export_dir: str | Path, *, name: str = "on-device") -> None:
        self.name = name
        self.model = OnnxChatModel(export_dir, name=name)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST" or not request.url.path.endswith("/chat/completions"):
            return _error(404, f"{request.method} {request.url.path} is not served on-device")
        body = json.loads(request.read() or b"{}")
        try:
            messages = Conversation.from_dicts(body.get("messages") or []).messages
            stop = body.get("stop") or ()
            params = GenerationParams(max_tokens=body.get("max_tokens"), temperature=body.get("temperature", 1.0),
                                      top_p=body.get("top_p", 1.0), seed=body.get("seed"),
                                      stop=(stop,) if isinstance(stop, str) else tuple(stop))
            if body.get("stream"):
                # start checks everything (so any bad-input error comes) before the 200 goes out
                run = self.model.start(messages, params)
                return httpx.Response(200, headers={"content-type": "text/event-stream"},
                                      content=self._sse(run))
            c = self.model.generate(messages, params)
        except (TuneryError, ValueError, KeyError) as e:
            return _error(400, str(e))
        return httpx.Response(200, json={
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
            "model": self.name, "usage": c.usage.to_openai(),
            "choices": [{"index": 0, "finish_reason": c.finish_reason,
                         "message": {"role": "assistant", "content": c.text}}]})

    def _sse(self, run: ChatRun) -> Iterator[bytes]:
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:12]}", int(time.time())
        for chunk in run:
            obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": self.name,
                   "choices": []}
            if chunk.usage is not None:
                obj["usage"] = chunk.usage.to_openai()
            else:
                obj["choices"] = [{"index": 0, "delta": {"content": chunk.text} if chunk.text else {},
                                   "finish_reason": chunk.finish_reason}]
            yield f"data: {json.dumps(obj)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    def close(self) -> None:
        self.model.close()


def _error(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message, "type": "invalid_request_error",
                                                  "param": None, "code": None}})


def on_device_client(export_dir: str | Path, *, name: str = "on-device"):
    """An ``openai.OpenAI`` client whose requests are answered in-process by the ONNX export."""
    import openai

    transport = OnDeviceTransport(export_dir, name=name)
    return openai.OpenAI(base_url="http://on-device.local/v1", api_key="on-device", max_retries=0,
                         http_client=httpx.Client(transport=transport))
