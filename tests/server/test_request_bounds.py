"""No request grows the server's memory without bound: a body over the request limit is refused
with 413 before it is parsed (chunked too), a conversation with more messages than the model's
context has tokens is refused before it is templated, and the report of an uploaded file with
such a conversation names it instead of rendering it. The bounds are stated in the README."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest
from test_errors import assert_error
from test_uploads import PeakRss

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads the RSS from /proc")

GB = 1 << 30


def jsonl_body(objs: list[dict]) -> bytes:
    return "".join(json.dumps(o) + "\n" for o in objs).encode()


def conversation(n: int) -> list[dict]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"} for i in range(n)]


def test_a_chat_with_100000_messages_is_a_clear_error(http, tiny_model):
    with PeakRss() as mem:
        r = http.post("/v1/chat/completions", json={"model": "tiny-random", "messages": conversation(100_001)})
    err = assert_error(r, 400, param="messages", code="context_length_exceeded")
    assert "maximum context length is 1024 tokens, but the 100,001 messages take at least one token each" in \
        err["message"]
    print(f"{mem.added / 2**20:.0f} MiB added RSS")
    assert mem.added < GB, f"{mem.added / 2**20:.0f} MiB added"


def test_a_50_mb_message_is_refused_before_it_is_read(http, tiny_model):
    from tunery.server.app import MAX_REQUEST_BYTES

    body = json.dumps({"model": "tiny-random", "messages": [{"role": "user", "content": "x" * (50 << 20)}]})
    with PeakRss() as mem:
        r = http.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    err = assert_error(r, 413, param=None, code="request_too_large")
    assert f"larger than the {MAX_REQUEST_BYTES:,}-byte limit" in err["message"]
    print(f"{mem.added / 2**20:.0f} MiB added RSS")
    assert mem.added < GB, f"{mem.added / 2**20:.0f} MiB added"
    ok = http.post("/v1/chat/completions", json={"model": "tiny-random", "max_tokens": 2,
                                                 "messages": [{"role": "user", "content": "Hi"}]})
    assert ok.status_code == 200, ok.text  # the limit leaves ordinary requests alone


def test_a_chunked_body_over_the_limit_is_413(http, tiny_model, monkeypatch):
    from tunery.server import app

    monkeypatch.setattr(app, "MAX_REQUEST_BYTES", 10_000)

    def chunks() -> Iterator[bytes]:  # no Content-Length to refuse it by
        yield b'{"model": "tiny-random", "messages": [{"role": "user", "content": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}]}'

    r = http.post("/v1/chat/completions", content=chunks(), headers={"Content-Type": "application/json"})
    assert "10,000-byte limit" in assert_error(r, 413, code="request_too_large")["message"]
    r = http.post("/v1/fine_tuning/jobs", content=chunks(), headers={"Content-Type": "application/json"})
    assert_error(r, 413, code="request_too_large")  # every JSON route, not chat alone
    small = http.post("/v1/chat/completions", json={"model": "tiny-random", "max_tokens": 1,
                                                    "messages": [{"role": "user", "content": "Hi"}]})
    assert small.status_code == 200, small.text


def test_the_report_of_a_100000_message_conversation_names_it(http, tiny_model):
    """This report once grew the server past 21 GB until the kernel killed it."""
    body = jsonl_body([*({"messages": [{"role": "system", "content": "Be brief."},
                                       {"role": "user", "content": f"Hi {i}"},
                                       {"role": "assistant", "content": "Hello!"}]} for i in range(10)),
                       {"messages": conversation(100_000)}])
    fid = http.post("/v1/files", files={"file": ("huge.jsonl", body)}, data={"purpose": "fine-tune"}).json()["id"]
    with PeakRss() as mem:
        r = http.get(f"/v1/tunery/files/{fid}/report", params={"model": "tiny-random"})
    assert r.status_code == 200, r.text
    report = r.json()
    assert [(i["line"], i["message"]) for i in report["validation"]["issues"] if i["severity"] == "error"] == [
        (11, "example has 100,000 messages, more than the model's context of 1,024 tokens can hold: split it into "
             "shorter conversations")]
    assert report["token_stats"]["n_examples"] == 10
    print(f"{mem.added / 2**20:.0f} MiB added RSS")
    assert mem.added < GB, f"{mem.added / 2**20:.0f} MiB added"


def test_the_report_of_text_that_is_not_utf8_names_the_lines(http):
    """The studio's report answered 500 on lone surrogates and invalid encodings."""
    good = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello bob@example.org"}]}
    body = jsonl_body([good] * 10) + b'{"messages": "caf\xe9"}\n' + \
        b'{"messages": [{"role": "user", "content": "a\\ud800 ann@example.org"}]}\n'
    fid = http.post("/v1/files", files={"file": ("enc.jsonl", body)}, data={"purpose": "fine-tune"}).json()["id"]
    r = http.get(f"/v1/tunery/files/{fid}/report")
    assert r.status_code == 200, r.text
    errors = [(i["line"], i["message"]) for i in r.json()["validation"]["issues"] if i["severity"] == "error"]
    assert errors[0] == (11, "not valid UTF-8 (byte 0xe9 at column 18): save the file as UTF-8")
    assert errors[1][0] == 12 and errors[1][1].startswith("not valid Unicode: a lone surrogate \\ud800")
    assert r.json()["pii"]["counts"] == {"EMAIL": 11}
