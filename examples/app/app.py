"""Lab 7: a small travel chat app that uses two models through the same ``openai`` SDK.

* the cloud: a model served by ``tunery serve`` (standing in for Azure OpenAI / AI Foundry);
* on-device: the fine-tuned model exported to ONNX int4 and run in-process by tunery's ONNX
  Runtime engine (``ondevice.py``).

Routing rule: short, simple questions stay on the device (fast, private, free); long ones, or
ones that ask to plan or compare, go to the cloud. If the cloud cannot be reached, the device
answers and the app says so.

    python examples/app/app.py --device ./travel-int4 --cloud-url http://127.0.0.1:8000/v1 \\
        --cloud-model travel "Where in Rome should I stay?"
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai

sys.path.insert(0, str(Path(__file__).resolve().parent))

SYSTEM = "You are a friendly AI travel assistant. Keep answers short and helpful."
CLOUD_WORDS = ("plan", "itinerary", "compare", "budget", "schedule", "days")


def route(question: str, *, max_device_words: int = 12) -> str:
    """"device" for short, simple questions; "cloud" for long ones or ones that need planning."""
    words = question.split()
    if len(words) > max_device_words or any(w.strip("?,.!").lower() in CLOUD_WORDS for w in words):
        return "cloud"
    return "device"


@dataclass
class Answer:
    text: str
    backend: str  # "device" or "cloud": who actually answered
    fell_back: bool = False


class TravelApp:
    def __init__(self, cloud: openai.OpenAI, cloud_model: str, device: openai.OpenAI, device_model: str = "on-device",
                 *, max_tokens: int = 120, max_device_words: int = 12) -> None:
        self.clients = {"cloud": (cloud, cloud_model), "device": (device, device_model)}
        self.max_tokens = max_tokens
        self.max_device_words = max_device_words

    def _messages(self, question: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]

    def _call(self, backend: str, question: str, stream: bool):
        client, model = self.clients[backend]
        return client.chat.completions.create(model=model, messages=self._messages(question), stream=stream,
                                              max_tokens=self.max_tokens, temperature=0)

    def ask(self, question: str) -> Answer:
        backend = route(question, max_device_words=self.max_device_words)
        try:
            r = self._call(backend, question, stream=False)
            return Answer(r.choices[0].message.content or "", backend)
        except (openai.APIConnectionError, openai.APITimeoutError, openai.InternalServerError):
            if backend == "device":
                raise
            r = self._call("device", question, stream=False)
            return Answer(r.choices[0].message.content or "", "device", fell_back=True)

    def stream(self, question: str) -> tuple[str, bool, Iterator[str]]:
        """(backend, fell_back, text pieces). The fallback happens before the first piece."""
        backend = route(question, max_device_words=self.max_device_words)
        fell_back = False
        try:
            chunks = self._call(backend, question, stream=True)
        except (openai.APIConnectionError, openai.APITimeoutError, openai.InternalServerError):
            if backend == "device":
                raise
            backend, fell_back = "device", True
            chunks = self._call("device", question, stream=True)
        return backend, fell_back, (c.choices[0].delta.content or "" for c in chunks if c.choices)


def main(argv: list[str] | None = None) -> int:
    from ondevice import on_device_client

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", required=True, help="ONNX export folder (tunery export ... -f onnx -q int4 -o DIR)")
    ap.add_argument("--cloud-url", default="http://127.0.0.1:8000/v1", help="tunery serve's /v1 URL")
    ap.add_argument("--cloud-model", default="smollm2-135m-instruct", help="model or deployment name on the server")
    ap.add_argument("--api-key", default="unused")
    ap.add_argument("question", nargs="*", help="ask once; without it, chat until an empty line")
    args = ap.parse_args(argv)
    cloud = openai.OpenAI(base_url=args.cloud_url, api_key=args.api_key, max_retries=0, timeout=60)
    app = TravelApp(cloud, args.cloud_model, on_device_client(args.device))
    questions = [" ".join(args.question)] if args.question else iter(lambda: input("you> ").strip(), "")
    for q in questions:
        backend, fell_back, pieces = app.stream(q)
        note = " (cloud unreachable, answered on-device)" if fell_back else ""
        print(f"[{backend}{note}] ", end="", flush=True)
        for piece in pieces:
            print(piece, end="", flush=True)
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
