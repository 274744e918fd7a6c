"""Concurrent clients against a real ``tunery serve`` on loopback with the tiny model (issue 21):
no request fails. Here 4 clients for 5 s; the full scale (50 clients for 60 s, with p50/p99
latency) is ``benchmarks/reliability.py --clients 50 --duration 60``. The clients are
``benchmarks/serve_throughput.py``'s (:func:`many_clients`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from serve_throughput import Server, many_clients  # noqa: E402

pytestmark = pytest.mark.reliability


def test_a_few_clients_streaming_for_a_few_seconds_get_no_error(tiny_model):
    server = Server(worker=False)
    try:
        out = many_clients(server.url, "tiny-random", clients=4, duration=5, tokens=8)
        alive = server.proc.poll() is None
    finally:
        server.stop()
    assert out["errors"] == [], out["errors"][:5]
    assert len(out["latency"]) >= 4 and alive  # every client got answers; the server lived
