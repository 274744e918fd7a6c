"""The reliability suite at full scale (issue 21), with the tiny random model, each part in a fresh
home; ``tests/reliability`` runs the same code at CI scale. Parts (``--parts``, default all):

- ``requests``: ``--requests`` (10,000) seeded malformed requests over every route of the app's
  OpenAPI schema (``tests/reliability/support_malformed.py``), in-process through a test client:
  counts by status, 5xx, error bodies that are not OpenAI error objects (each printed with the
  index that reproduces it), the server's memory (this process's RSS) before and after;
- ``kills``: ``--kills`` (20) SIGKILLs of a ``tunery worker`` or of its training process at random
  moments of identical jobs (``support_kills.py``): each job's end, and whether a succeeded one has
  the uninterrupted run's weights, tensor for tensor;
- ``datasets``: ``--datasets`` (200) malformed files (``support_datasets.py``) through ``tunery data
  validate`` and ``stats`` and through the upload, its report and a job;
- ``clients``: ``--clients`` (50) clients streaming from a real ``tunery serve`` on loopback for
  ``--duration`` (60) seconds (``serve_throughput.many_clients``): errors, p50/p99 latency, the
  server's memory before and after.

Exits 1 on any failure.

    python benchmarks/reliability.py [--parts requests,kills,datasets,clients] [--requests 10000]
        [--kills 20] [--datasets 200] [--clients 50] [--duration 60] [--tokens 16] [--seed 0]
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
sys.path[:0] = [str(ROOT / "tests" / "reliability"), str(ROOT / "tests"), str(ROOT / "benchmarks")]

OK_CHAT = {"model": "tiny-random", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}


def _rss_mib(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


_TINY: list[Path] = []


def fresh_home(part: str) -> Path:
    """A new ``TUNERY_HOME`` with the tiny random model registered as ``tiny-random``."""
    from tunery.models import ModelRecord, register
    from tunery.models.catalog import CATALOG
    from tunery.models.tiny import build_tiny_model

    home = Path(tempfile.mkdtemp(prefix=f"tunery-reliability-{part}-"))
    os.environ["TUNERY_HOME"] = str(home)
    if not _TINY:
        _TINY.append(build_tiny_model(home.parent / f"{home.name}-tiny-random"))
    register(ModelRecord(id="tiny-random", kind="base", path=_TINY[0], source="builtin-tiny",
                         meta={"catalog": "tiny-random", "context_length": CATALOG["tiny-random"].context_length}))
    return home


def part_requests(args) -> bool:
    from fastapi.testclient import TestClient
    from support_malformed import Generator, known_values, probe

    from tunery.server.app import create_app

    fresh_home("requests")
    app = create_app(allowed_hosts=["testserver"])
    with TestClient(app, raise_server_exceptions=False) as client:
        known = known_values(client)
        client.post("/v1/chat/completions", json=OK_CHAT)  # the model is loaded before "before"
        before = _rss_mib()
        t0 = time.perf_counter()
        out = probe(client, Generator(app.openapi(), seed=args.seed, known=known), args.requests)
        elapsed = time.perf_counter() - t0
        after = _rss_mib()
        alive = client.post("/v1/chat/completions", json=OK_CHAT).status_code == 200

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
    return alive and not out.failures


def part_kills(args) -> bool:
    import support_kills

    fresh_home("kills")
    os.environ.setdefault("TUNERY_TRAIN_PRECISION", "fp32")  # as the test suite trains
    t0 = time.perf_counter()
    try:
        outcomes = support_kills.run(args.kills, seed=args.seed, timeout=900,
                                     log=lambda s: print("  " + s, flush=True))
    except AssertionError as e:
        print(f"FAILED: {e}")
        return False
    landed = sum(len(o.kills) for o in outcomes)
    by = {s: sum(o.status == s for o in outcomes) for s in ("succeeded", "failed", "cancelled")}
    same = sum(bool(o.same_weights) for o in outcomes)
    print(f"{landed} SIGKILLs landed ({args.kills} planned, seed {args.seed}) on {len(outcomes)} jobs in "
          f"{time.perf_counter() - t0:.0f} s: {by['succeeded']} succeeded ({same} with the uninterrupted run's "
          f"weights), {by['failed']} failed, {by['cancelled']} cancelled; none lost or stuck")
    return by["succeeded"] == same == len(outcomes)


def part_datasets(args) -> bool:
    from click.testing import CliRunner
    from fastapi.testclient import TestClient
    from support_datasets import check_cli, check_job, datasets, upload_all

    from tunery.cli.main import cli
    from tunery.jobs import Worker, get_job
    from tunery.server.app import create_app

    home = fresh_home("datasets")
    sets = datasets(args.datasets, seed=args.seed, huge=True)
    failures: list[str] = []
    exits: dict[str, dict[int, int]] = {"validate": {}, "stats": {}}
    t0 = time.perf_counter()
    runner = CliRunner()
    for ds in sets:
        path = home / ds.name
        path.write_bytes(ds.content)
        for command, extra in (("validate", []), ("stats", ["--model", "tiny-random"])):
            r = runner.invoke(cli, ["data", command, str(path), *extra])
            code = 1 if r.exception is not None and not isinstance(r.exception, SystemExit) else r.exit_code
            exits[command][code] = exits[command].get(code, 0) + 1
            if (bad := check_cli(ds, command, r.exit_code, r.output, r.exception)) is not None:
                failures.append(bad)
        path.unlink()
    cli_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with TestClient(create_app(allowed_hosts=["testserver"]), raise_server_exceptions=False) as client:
        bad, jobs = upload_all(sets, client)
        failures += bad
        Worker().run_once()
        statuses: dict[str, int] = {}
        for ds, job_id in jobs:
            job = get_job(job_id)
            statuses[job["status"]] = statuses.get(job["status"], 0) + 1
            if (bad := check_job(ds, job)) is not None:
                failures.append(bad)
    kinds = {k for ds in sets for k in ds.kind.split(",")}
    print(f"{len(sets)} malformed datasets (seed {args.seed}, {len(kinds)} kinds of damage, "
          f"{sum(len(ds.content) for ds in sets) / 2**20:.0f} MiB in all)")
    print(f"CLI in {cli_s:.0f} s: validate exits {dict(sorted(exits['validate'].items()))}, "
          f"stats exits {dict(sorted(exits['stats'].items()))}")
    print(f"upload + report + job in {time.perf_counter() - t0:.0f} s: {len(jobs)} jobs, ended "
          f"{dict(sorted(statuses.items()))}")
    print(f"failures (tracebacks, lines not named, 5xx, non-OpenAI errors, jobs not failed): {len(failures)}")
    for failure in failures[:50]:
        print("  " + failure[:400])
    return not failures


def part_clients(args) -> bool:
    from serve_throughput import Server, many_clients, pct, stream_once

    fresh_home("clients")
    server = Server(worker=False)
    try:
        stream_once(server.url, "tiny-random", "hi", args.tokens)  # the model is loaded before "before"
        before = server.rss_mib()
        out = many_clients(server.url, "tiny-random", args.clients, args.duration, args.tokens)
        after = server.rss_mib()
        alive = server.proc.poll() is None
    finally:
        server.stop()
    lat, errors = out["latency"], out["errors"]
    print(f"{args.clients} clients streaming tiny-random ({args.tokens} tokens each) for {args.duration:.0f} s: "
          f"{len(lat)} requests in {out['wall']:.1f} s ({len(lat) / out['wall']:.1f}/s)")
    print(f"latency p50 {pct(lat, 50):.3f} s, p99 {pct(lat, 99):.3f} s; first token p50 "
          f"{pct(out['first_token'], 50):.3f} s, p99 {pct(out['first_token'], 99):.3f} s")
    print(f"errors: {len(errors)}" + (f", e.g. {errors[0]}" if errors else ""))
    print(f"server RSS: {before:.0f} MiB before, {after:.0f} MiB after ({after - before:+.0f} MiB); "
          f"server alive: {alive}")
    return alive and not errors and bool(lat)


PARTS = {"requests": part_requests, "kills": part_kills, "datasets": part_datasets, "clients": part_clients}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default=",".join(PARTS), help="which parts, comma-separated")
    ap.add_argument("--requests", type=int, default=10_000, help="malformed requests")
    ap.add_argument("--kills", type=int, default=20, help="SIGKILLs of a worker or a training process")
    ap.add_argument("--datasets", type=int, default=200, help="malformed datasets")
    ap.add_argument("--clients", type=int, default=50, help="concurrent streaming clients")
    ap.add_argument("--duration", type=float, default=60, help="seconds the clients stream")
    ap.add_argument("--tokens", type=int, default=16, help="tokens per streamed answer")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if unknown := [p for p in parts if p not in PARTS]:
        ap.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.getLogger("tunery.server").setLevel(logging.CRITICAL)  # the failures are printed by each part
    ok = True
    for part in parts:
        print(f"\n== {part}", flush=True)
        passed = PARTS[part](args)
        print(f"-> {part}: {'passed' if passed else 'FAILED'}", flush=True)
        ok = ok and passed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
