"""Malformed fine-tuning datasets, for the reliability suite (``test_malformed_datasets.py``, ~30)
and ``benchmarks/reliability.py`` (200): a seeded :class:`random.Random` builds files of valid
chat examples with broken lines inserted (bytes that are not UTF-8, lone surrogates, JSON that is
not JSON, wrong types, unknown roles, non-finite weights, deep nesting, long conversations, NUL
bytes...) or files broken as a whole (empty, UTF-16, binary, gzip, a pretty-printed document,
too few examples). The same seed gives the same files, so a failure is replayed by its index.

:func:`check_cli` and :func:`check_upload` say what is wrong with how tunery met one file
through ``tunery data validate`` / ``stats`` and through the HTTP upload, its report and a job:
a traceback, an exit status of 0 for a broken file, a broken line not named, a 5xx, an error
that is not an OpenAI error object, a job that does not fail with a storable reason."""

from __future__ import annotations

import gzip
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from support_malformed import check

from support_chat import chat_lines

OK = {"role": "assistant", "content": "ok"}
USER = {"role": "user", "content": "hi"}


def _msgs(*messages) -> bytes:
    return json.dumps({"messages": list(messages)}).encode()


# One broken line each: every one is an error for the validator (never a warning only).
LINE_CASES: dict[str, Callable[[random.Random], bytes]] = {
    "latin-1": lambda r: b'{"messages": [{"role": "user", "content": "caf\xe9"}]}',
    "truncated-utf8": lambda r: b'{"messages": [{"role": "user", "content": "\xe2\x82"}]}',
    "surrogate-bytes": lambda r: b'{"messages": [{"role": "user", "content": "a\xed\xa0\x80"}, ' + _msgs(OK)[14:-1] + b"}",
    "overlong-utf8": lambda r: b'{"messages": [{"role": "user", "content": "\xc0\xaf"}]}',
    "lone-surrogate-content": lambda r: _msgs({"role": "user", "content": "x\ud800"}, OK),
    "lone-surrogate-role": lambda r: _msgs({"role": "\udfff", "content": "x"}, OK),
    "lone-surrogate-key": lambda r: b'{"messages": [{"role": "user", "content": "x", "\\udfff": 1}]}',
    "not-json": lambda r: b"{not json",
    "truncated-json": lambda r: _msgs(USER, OK)[: r.randrange(2, 40)],
    "trailing-comma": lambda r: b'{"messages": [{"role": "user", "content": "x"},]}',
    "messages-string": lambda r: b'{"messages": "hello"}',
    "messages-number": lambda r: json.dumps({"messages": r.choice([0, -1, 1e308, True])}).encode(),
    "messages-null": lambda r: b'{"messages": null}',
    "messages-empty": lambda r: b'{"messages": []}',
    "no-messages": lambda r: b'{"conversation": []}',
    "top-level-array": lambda r: b"[1, 2, 3]",
    "top-level-string": lambda r: b'"just a string"',
    "content-number": lambda r: _msgs({"role": "user", "content": r.choice([1, 2.5, None])}, OK),
    "content-object": lambda r: _msgs({"role": "user", "content": {"text": "x"}}, OK),
    "content-bad-part": lambda r: _msgs({"role": "user", "content": [{"type": "image", "url": "x"}]}, OK),
    "unknown-role": lambda r: _msgs({"role": r.choice(["robot", "", "USER", "function"]), "content": "x"}, OK),
    "missing-content": lambda r: _msgs({"role": "user"}, OK),
    "no-assistant": lambda r: _msgs(USER),
    "weight-string": lambda r: _msgs(USER, {**OK, "weight": "1"}),
    "weight-two": lambda r: _msgs(USER, {**OK, "weight": 2}),
    "weight-nan": lambda r: b'{"messages": [{"role": "user", "content": "x"}, '
                            b'{"role": "assistant", "content": "y", "weight": NaN}]}',
    "infinity": lambda r: b'{"messages": [{"role": "user", "content": "x"}, '
                          b'{"role": "assistant", "content": "y", "weight": Infinity}]}',
    "deep-nesting": lambda r: b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "raw-nul": lambda r: b'{"messages": [{"role": "user", "content": "a\x00b"}, ' + _msgs(OK)[14:-1] + b"}",
    "raw-control": lambda r: b'{"messages": [{"role": "user", "content": "a\x01\x1fb"}, ' + _msgs(OK)[14:-1] + b"}",
    "tool-call-bad-args": lambda r: json.dumps({"messages": [USER, {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "x"}, OK],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}).encode(),
    "legacy-functions": lambda r: json.dumps({"messages": [USER, OK], "functions": [{"name": "f"}]}).encode(),
    "long-conversation": lambda r: _msgs(*([USER, OK] * r.randrange(1000, 3000)), {"role": "robot", "content": "x"}),
    "duplicate-keys-bad": lambda r: b'{"messages": [{"role": "user", "content": "x"}], "messages": 5}',
    "huge-number": lambda r: b'{"messages": [{"role": "user", "content": "x"}, '
                             b'{"role": "assistant", "content": "y", "weight": 1' + b"0" * 5000 + b"}]}",
}
HUGE_LINE = "line-over-limit"  # a line longer than MAX_LINE_BYTES (8 MiB): only at full scale


def _good(n: int) -> list[bytes]:
    return [json.dumps(x).encode() for x in chat_lines(n)]


# Whole files broken: (bytes, whether a line must be named)
FILE_CASES: dict[str, Callable[[random.Random], bytes]] = {
    "empty": lambda r: b"",
    "blank-lines": lambda r: b"\n \n\t\n\n",
    "utf-16": lambda r: b"\n".join(_good(12)).decode().encode("utf-16"),
    "binary": lambda r: bytes(r.randrange(256) for _ in range(r.randrange(1, 4096))),
    "gzip": lambda r: gzip.compress(b"\n".join(_good(12)) + b"\n", mtime=0),
    "pretty-printed": lambda r: json.dumps(chat_lines(12), indent=2).encode(),
    "too-few": lambda r: b"\n".join(_good(r.randrange(1, 10))) + b"\n",
    "nuls": lambda r: b"\x00" * r.randrange(1, 10_000),
    "cr-only": lambda r: b"\r".join(_good(12)) + b"\r",
}


@dataclass
class Dataset:
    index: int
    kind: str  # the cases, comma-separated
    content: bytes
    lines: list[int] = field(default_factory=list)  # the broken lines, each to be named

    @property
    def name(self) -> str:
        return f"malformed-{self.index:03d}.jsonl"


def datasets(n: int, *, seed: int = 0, huge: bool = False) -> list[Dataset]:
    """``n`` broken files: about one in four broken as a whole, the rest 12 valid examples with 1-3
    broken lines inserted. ``huge`` adds a line over the line limit now and then (8 MiB each)."""
    rng = random.Random(seed)
    line_kinds = sorted(LINE_CASES) + ([HUGE_LINE] if huge else [])
    out = []
    for i in range(n):
        if rng.random() < 0.25:
            kind = rng.choice(sorted(FILE_CASES))
            out.append(Dataset(i, kind, FILE_CASES[kind](rng)))
            continue
        lines = _good(12)
        kinds = rng.sample(line_kinds, rng.randint(1, 3))
        for kind in kinds:
            bad = (b'{"messages": "' + b"x" * (9 << 20) + b'"}' if kind == HUGE_LINE else LINE_CASES[kind](rng))
            lines.insert(rng.randrange(len(lines) + 1), bad)
        good = set(_good(12))
        broken = [n for n, b in enumerate(lines, 1) if b not in good]
        out.append(Dataset(i, ",".join(kinds), b"\n".join(lines) + b"\n", broken))
    return out


def _named(text: str, ds: Dataset) -> list[int]:
    """The broken lines of ``ds`` that ``text`` does not name."""
    return [n for n in ds.lines if not re.search(rf"\bline {n}\b", text)]


def check_cli(ds: Dataset, command: str, exit_code: int, output: str, exception: BaseException | None) -> str | None:
    """What is wrong with ``tunery data COMMAND FILE`` on ``ds`` (``validate``: exit 1 naming every
    broken line; ``stats``: the valid examples counted with a warning, or a one-line error), or None."""
    from tunery.errors import TuneryError

    where = f"#{ds.index} [{ds.kind}] data {command}"
    if exception is not None and not isinstance(exception, (SystemExit, TuneryError)):
        return f"{where}: {type(exception).__name__}: {exception}"[:500]  # a traceback at the edge
    if "Traceback" in output or "unexpected " in output:
        return f"{where}: traceback in output: {output[-400:]}"
    if isinstance(exception, TuneryError):  # the entry point prints it as one line and exits 1
        return None
    if command == "validate":
        if exit_code != 1:
            return f"{where}: exit {exit_code}, not 1: {output[-300:]}"
        if missing := _named(output, ds):
            return f"{where}: lines {missing} not named: {output[-300:]}"
    elif ds.kind == "too-few":  # stats counts a file of any size (as a validation file would be)
        if exit_code != 0:
            return f"{where}: exit {exit_code}: {output[-300:]}"
    elif exit_code not in (0, 1) or (exit_code == 0 and "warning" not in output):
        return f"{where}: exit {exit_code} without a warning: {output[-300:]}"
    return None


def check_upload(ds: Dataset, client, *, model: str = "tiny-random") -> tuple[str | None, str | None]:
    """Upload ``ds``, ask for its report and create a job on it through ``client`` (a test client
    of the app). Returns (what is wrong or None, the job's id or None when none was created)."""
    where = f"#{ds.index} [{ds.kind}]"
    r = client.post("/v1/files", files={"file": (ds.name, ds.content, "application/jsonl")},
                    data={"purpose": "fine-tune"})
    if (bad := check(r.status_code, r.headers, r.content)) is not None:
        return f"{where} upload: {bad}", None
    if r.status_code != 200:
        return None, None  # refused with an OpenAI error: nothing more to do with it
    file_id = r.json()["id"]
    r = client.get(f"/v1/tunery/files/{file_id}/report", params={"model": model})
    if (bad := check(r.status_code, r.headers, r.content)) is not None:
        return f"{where} report: {bad}", None
    if r.status_code == 200:
        v = r.json()["validation"]
        if v["n_errors"] == 0:
            return f"{where} report: no error found in a broken file", None
        shown = " ".join(f"line {i['line']}" for i in v["issues"] if i["line"] is not None)
        if (missing := _named(shown, ds)) and v["n_issues"] <= len(v["issues"]):
            return f"{where} report: lines {missing} not named", None
    r = client.post("/v1/fine_tuning/jobs", json={"model": model, "training_file": file_id, "seed": 1})
    if (bad := check(r.status_code, r.headers, r.content)) is not None:
        return f"{where} job: {bad}", None
    return None, (r.json()["id"] if r.status_code == 200 else None)


def upload_all(sets: list[Dataset], client) -> tuple[list[str], list[tuple[Dataset, str]]]:
    """:func:`check_upload` for each of ``sets``: what went wrong, and (dataset, job id) for each
    that got as far as a job."""
    failures, jobs = [], []
    for ds in sets:
        bad, job_id = check_upload(ds, client)
        if bad:
            failures.append(bad)
        if job_id:
            jobs.append((ds, job_id))
    return failures, jobs


def check_job(ds: Dataset, job: dict) -> str | None:
    """A job on a broken file ends failed, its error naming every broken line (at most 20 are
    quoted) or the file's problem."""
    where = f"#{ds.index} [{ds.kind}] job {job['id']}"
    if job["status"] != "failed":
        return f"{where}: {job['status']}, not failed"
    message = (job["error"] or {}).get("message") or ""
    if not message or job["error"].get("code") not in ("invalid_training_file", "invalid_hyperparameters"):
        return f"{where}: error {job['error']}"
    json.dumps(message, ensure_ascii=False).encode("utf-8")  # storable: would raise on a lone surrogate
    if (missing := _named(message, ds)) and "more)" not in message:
        return f"{where}: lines {missing} not named in {message[:300]}"
    return None
