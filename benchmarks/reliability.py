"""Malformed requests at full scale: 10,000 seeded malformed requests over every route of the
app's OpenAPI schema (the generator of ``tests/reliability/support_malformed.py``), sent
in-process through a test client with the tiny random model registered in a fresh home. Prints
the counts by status, the 5xx count, the server's memory (this process's RSS) before and after,
and every failure (a 5xx, or an error body that is not an OpenAI error object) with the index
that reproduces it; exits 1 on any failure, or if a normal chat request fails afterwards.

    python benchmarks/reliability.py [--requests 10000] [--seed 0]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "reliability"))

from support_malformed import Generator, known_values, probe  # noqa: E402


def _rss_mib(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    os.environ["TUNERY_HOME"] = tempfile.mkdtemp(prefix="tunery-reliability-")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.getLogger("tunery.server").setLevel(logging.CRITICAL)  # the failures are printed below

    from fastapi.testclient import TestClient

    from tunery.models import ModelRecord, register
    from tunery.models.catalog import CATALOG
    from tunery.models.tiny import build_tiny_model
    from tunery.server.app import create_app

    path = build_tiny_model(Path(os.environ["TUNERY_HOME"]) / "tiny-random-src")
    register(ModelRecord(id="tiny-random", kind="base", path=path, source="builtin-tiny",
                         meta={"catalog": "tiny-random", "context_length": CATALOG["tiny-random"].context_length}))
    ok_chat = {"model": "tiny-random", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
    app = create_app(allowed_hosts=["testserver"])
    with TestClient(app, raise_server_exceptions=False) as client:
        known = known_values(client)
        client.post("/v1/chat/completions", json=ok_chat)  # the model is loaded before "before"
        before = _rss_mib()
        t0 = time.perf_counter()
        out = probe(client, Generator(app.openapi(), seed=args.seed, known=known), args.requests)
        elapsed = time.perf_counter() - t0
        after = _rss_mib()
        alive = client.post("/v1/chat/completions", json=ok_chat).status_code == 200

    print(f"{args.requests:,} malformed requests (seed {args.seed}) over {len(app.openapi()['paths'])} "
          f"schema paths in {elapsed:.0f} s")
    print("by status: " + ", ".join(f"{s}: {n}" for s, n in sorted(out.by_status.items())))
    print(f"5xx: {out.server_errors}; bodies that are not OpenAI errors: "
          f"{len(out.failures) - out.server_errors}")
    print(f"server RSS: {before:.0f} MiB before, {after:.0f} MiB after ({after - before:+.0f} MiB); "
          f"peak {_rss_mib('VmHWM'):.0f} MiB")
    print(f"a normal chat request afterwards: {'200' if alive else 'FAILED'}")
    for failure in out.failures[:50]:
        print("  " + failure[:400])
    return 0 if alive and not out.failures else 1


if __name__ == "__main__":
    sys.exit(main())
