"""No input makes the server answer 5xx: seeded malformed requests over every route of the app's
OpenAPI schema (``support_malformed``) each get a 2xx or a 4xx with an OpenAI error object, and
the app still answers a normal request afterwards. The full-scale run (10,000 requests, memory
before and after) is ``benchmarks/reliability.py``; the cases it found are kept below by name."""

from __future__ import annotations

import json

import pytest
from support_malformed import Generator, check, known_values, probe

pytestmark = pytest.mark.reliability

CHAT = "/v1/chat/completions"
OK_CHAT = {"model": "tiny-random", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def app_client(tiny_model):
    from fastapi.testclient import TestClient

    from tunery.server.app import create_app

    # a bug must come back as the 500 a client sees, not as an exception raised in the test
    with TestClient(create_app(allowed_hosts=["testserver"]), raise_server_exceptions=False) as c:
        yield c


def test_generated_malformed_requests_get_no_5xx_and_openai_errors(app_client):
    app = app_client.app
    out = probe(app_client, Generator(app.openapi(), seed=21, known=known_values(app_client)), 1000)
    assert out.server_errors == 0 and not out.failures, "\n".join(out.failures[:10])
    assert sum(n for s, n in out.by_status.items() if 400 <= s < 500) > 300  # it did send bad input
    r = app_client.post(CHAT, json=OK_CHAT)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["role"] == "assistant"


def _raw(body: dict) -> bytes:
    # ensure_ascii keeps a lone surrogate as the escape "\ud800", as a client would send it
    return json.dumps(body, allow_nan=True).encode()


@pytest.mark.parametrize("url,body,param", [
    (CHAT, {**OK_CHAT, "messages": [{"role": "user", "content": "a\ud800b"}]}, "messages[0].content"),
    (CHAT, {**OK_CHAT, "messages": [{"role": "user", "content": [{"type": "text", "text": "\udfff"}]}]},
     "messages[0].content[0].text"),
    (CHAT, {**OK_CHAT, "stop": ["\ud800"]}, "stop[0]"),
    ("/v1/deployments", {"name": "d", "model": "tiny-random", "blocklist": ["se\udfffcret"]}, "blocklist[0]"),
    ("/v1/deployments", {"name": "d", "model": "tiny-random", "tpm": 2**63}, "tpm"),
    ("/v1/fine_tuning/jobs", {"model": "tiny-random", "training_file": "file-x",
                              "hyperparameters": {"batch_size": float("inf")}}, "hyperparameters.batch_size"),
    ("/v1/fine_tuning/jobs", {"model": "tiny-random", "training_file": "file-x",
                              "hyperparameters": {"n_epochs": float("-inf")}}, "hyperparameters.n_epochs"),
])
def test_found_500s_are_400s_naming_the_param(app_client, url, body, param):
    r = app_client.post(url, content=_raw(body), headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert check(r.status_code, r.headers, r.content) is None
    assert r.json()["error"]["param"] == param


def test_invalid_utf8_surrogate_bytes_are_a_400(app_client):
    # a surrogate's own bytes (ED A0 80) are not UTF-8; the JSON decoder lets them through
    body = b'{"model": "tiny-random", "max_tokens": 2, "messages": [{"role": "user", "content": "a\xed\xa0\x80"}]}'
    r = app_client.post(CHAT, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages[0].content", r.text


@pytest.mark.parametrize("path", ["/studio/static/js/api.js%00.png", "/studio/static/" + "x" * 5000])
def test_odd_static_paths_are_404(app_client, path):
    r = app_client.get(path)
    assert r.status_code == 404 and check(r.status_code, r.headers, r.content) is None, r.text
