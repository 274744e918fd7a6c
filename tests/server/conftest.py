"""The server on a free loopback port in a background thread, and official-SDK clients for it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _clean_limiter():
    from tunery.serving.ratelimit import limiter

    limiter.reset()
    yield
    limiter.reset()


@pytest.fixture(scope="session")
def server():
    """One server for the session: it reads TUNERY_HOME per request, so each test still sees its
    own home. No API keys (those are read once, when the app is made)."""
    import os

    from tunery.server import ServerThread

    saved = os.environ.pop("TUNERY_API_KEY", None)
    try:
        with ServerThread() as s:
            yield s
    finally:
        if saved is not None:
            os.environ["TUNERY_API_KEY"] = saved


@pytest.fixture
def client(server):
    import openai

    # no retries: a 429 must reach the test, not be retried after Retry-After seconds
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)


@pytest.fixture
def http(server):
    import httpx

    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


def travel_examples(n: int = 12) -> list[dict]:
    cities = ["Rome", "Paris", "Lisbon", "Kyoto", "Cairo", "Lima", "Oslo"]
    return [{"messages": [{"role": "system", "content": "You are a helpful travel assistant."},
                          {"role": "user", "content": f"What should I see in {cities[i % len(cities)]}?"},
                          {"role": "assistant", "content": f"In {cities[i % len(cities)]}, visit the museums, "
                                                           "parks and markets; spring is mild."}]}
            for i in range(n)]


@pytest.fixture
def training_file(tmp_path: Path) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in travel_examples()))
    return path


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):
    """Every llm node of a flow, whatever model it names, is answered by this scripted model; its
    one reply (``fake.replies[0]``) is a web-classification answer."""
    from tunery.serving import ScriptedChatModel

    model = ScriptedChatModel(replies=['{"category": "Academic", "evidence": "Both"}'])
    monkeypatch.setattr("tunery.serving.resolve.get_chat_model", lambda name: model)
    return model


@pytest.fixture
def follow():
    """``follow(client, job, want="succeeded")``: poll an SDK fine-tuning job until it ends; fail
    the test if it ends otherwise, or is still running after ``timeout`` seconds."""
    def _follow(client, job, want: str = "succeeded", timeout: float = 600):
        deadline = time.monotonic() + timeout
        while job.status not in ("succeeded", "failed", "cancelled"):
            assert time.monotonic() < deadline, f"job stuck in {job.status}"
            time.sleep(0.5)
            job = client.fine_tuning.jobs.retrieve(job.id)
        assert job.status == want, job.error
        return job

    return _follow


@pytest.fixture
def start_batch():
    """``start_batch(client, name, lines)``: upload ``lines`` rows for the web-classification flow,
    start a one-worker batch run called ``name`` and wait until it is Running."""
    def _start(client, name: str, lines: int) -> None:
        def ok(r):
            assert r.status_code == 200, r.text
            return r.json()

        ok(client.post("/v1/tunery/flow-data", json={"name": "many.jsonl", "content": "".join(
            json.dumps({"url": f"https://x/{i}", "text_content": "t"}) + "\n" for i in range(lines))}))
        ok(client.post("/v1/tunery/runs", json={"flow": "web-classification", "data": "upload:many.jsonl",
                                                "name": name, "workers": 1}))
        deadline = time.monotonic() + 30
        while ok(client.get(f"/v1/tunery/runs/{name}"))["status"] != "Running":
            assert time.monotonic() < deadline
            time.sleep(0.05)

    return _start
