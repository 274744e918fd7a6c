"""The one-pass file report (validation, token statistics, personal-data scan): the same answers as
the three tools run one after the other, in memory that does not grow with the file."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from chatlines import example, good_lines, jsonl, line

from tunery.data import check_file, report_file, token_stats, validate_bytes
from tunery.data.text import MAX_LINE_BYTES


@pytest.fixture
def tok(tiny_model):
    from tunery.models.loading import load_tokenizer

    return load_tokenizer(tiny_model)


def mixed_file(tmp_path: Path) -> Path:
    """Every kind of line the tools treat differently."""
    lines: list[str | bytes] = list(good_lines(12))
    lines[3] = line(example(3, system=False))  # no system message
    lines[5] = lines[4]  # a duplicate
    pii = example(20)
    pii["messages"][1]["content"] = "Mail me at ana.lopez@example.org or call +44 20 7946 0958"
    long = example(21)
    long["messages"][2]["content"] = "Rome " * 700  # over the tiny model's max_seq_length
    lines += [line(pii), line(long), "", '{"messages": [', "call me on +1 212-555-0123",
              b'{"messages": "caf\xe9"}', '{"messages": [{"role": "user", "content": "a\\ud800b"}]}',
              line({"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "again"}]})]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines))
    return path


def test_one_pass_equals_the_three_tools(tok, tmp_path):
    path = mixed_file(tmp_path)
    kw = {"context_length": 1024, "max_seq_length": 512}
    result = report_file(path, tokenizer=tok, **kw)
    separate = validate_bytes(path.read_bytes(), tokenizer=tok, **kw)
    assert result.validation.to_dict() == separate.to_dict()
    assert separate.n_errors == 6 and any(i.severity == "warning" for i in separate.issues)
    assert result.validation.examples == [] and result.validation.n_examples == len(separate.examples) == 14
    assert result.token_stats(context_length=1024, n_epochs=2) == token_stats(
        separate.conversations, tok, context_length=1024, n_epochs=2)
    assert result.pii.to_dict() == check_file(path).to_dict()
    assert result.pii.counts == {"EMAIL": 1, "PHONE": 2}


def test_caps_keep_the_counts(tmp_path):
    bad = [line({"messages": [{"role": "assistent", "content": f"x {i}"}]}) for i in range(30)]
    pii = [line({"messages": [{"role": "user", "content": f"a{i}@example.org"},
                              {"role": "assistant", "content": "ok"}]}) for i in range(10)]
    path = tmp_path / "many.jsonl"
    path.write_bytes(jsonl(bad + pii))
    full = report_file(path)
    capped = report_file(path, max_issues=5, max_findings=2)
    assert capped.validation.n_errors == full.validation.n_errors >= 30
    assert len(capped.validation.issues) < 10 < len(full.validation.issues)
    v = capped.validation
    assert v.format(5).endswith(f"... and {v.n_errors + v.n_warnings - 5} more")
    assert capped.pii.n_findings == 10 and len(capped.pii.findings) == 2 and capped.pii.counts == {"EMAIL": 10}
    assert capped.pii.lines_with_pii == full.pii.lines_with_pii == list(range(31, 41))


def test_a_utf16_upload_is_not_reported_clean(tmp_path):
    """Read as UTF-8, a UTF-16 file has a zero byte between its letters and no pattern matches: the
    report says the scan was not done, not that nothing was found."""
    pii = [line({"messages": [{"role": "user", "content": f"a{i}@example.org"},
                              {"role": "assistant", "content": "ok"}]}) for i in range(10)]
    path = tmp_path / "u16.jsonl"
    path.write_bytes(jsonl(pii).decode().encode("utf-16"))
    result = report_file(path)
    assert result.pii.not_scanned == "the file is UTF-16 encoded: save it as UTF-8"
    assert [i.message for i in result.validation.errors] == [result.pii.not_scanned]
    path.write_bytes(jsonl(pii))
    assert report_file(path).pii.not_scanned is None and report_file(path).pii.n_findings == 10


def test_a_conversation_longer_than_the_context_is_refused_before_templating(tok, tmp_path):
    """100,000 messages once took the server past 21 GB: every message takes a token at least, so
    such an example is named without being rendered; the others are still measured."""
    huge = {"messages": [{"role": "user" if i % 2 == 0 else "assistant", "content": "hi"} for i in range(100_000)]}
    path = tmp_path / "huge.jsonl"
    path.write_bytes(jsonl([*good_lines(10), line(huge)]))
    result = report_file(path, tokenizer=tok, context_length=1024)
    errors = result.validation.errors
    assert [(e.line, e.message) for e in errors] == [
        (11, "example has 100,000 messages, more than the model's context of 1,024 tokens can hold: split it into "
             "shorter conversations")]
    assert result.validation.n_examples == 10 and len(result.tally) == 10


def test_a_line_over_the_limit_is_named_and_skipped_unread(tmp_path):
    from tunery.data.validate import validate_file

    path = tmp_path / "long.jsonl"
    too_long = MAX_LINE_BYTES + 1
    path.write_bytes(jsonl([*good_lines(10), "x" * too_long, *good_lines(1, start=10)]))
    for report in (report_file(path).validation, validate_file(path)):
        assert [(i.line, i.message) for i in report.errors] == [
            (11, f"the line is {too_long:,} bytes, longer than the {MAX_LINE_BYTES:,} a line may hold: no model's "
                 "context holds an example that long")]
        assert report.n_examples == 11 and report.n_lines == 12


def test_the_line_reader_matches_split():
    from tunery.data.text import byte_lines, file_lines

    for data in (b"", b"\n", b"a", b"a\n", b"a\nb", b"a\n\nb\n", b"\n\n", b"x" * 10 + b"\nshort\n" + b"y" * 11):
        expected = data.split(b"\n")
        if expected[-1] == b"":
            expected.pop()
        expected = [raw if len(raw) <= 10 else len(raw) for raw in expected]
        import io

        assert list(file_lines(io.BytesIO(data), 10)) == expected, data
        assert list(byte_lines(data, 10)) == expected, data
    assert MAX_LINE_BYTES == 8 << 20


MEASURE = textwrap.dedent("""
    import gc, json, sys
    from tunery.data.report import report_file

    def status(key):  # in KiB
        return next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith(key + ":"))

    tokenizer = None
    if len(sys.argv) > 2:
        from transformers import AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained(sys.argv[2])
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak so far (imports) is forgotten: VmHWM restarts from VmRSS
    base = status("VmRSS")
    r = report_file(sys.argv[1], tokenizer=tokenizer, context_length=1024 if tokenizer else None,
                    max_issues=1000, max_findings=200)
    print(json.dumps({"added_bytes": (status("VmHWM") - base) * 1024, "n_examples": r.validation.n_examples,
                      "n_errors": r.validation.n_errors, "n_findings": r.pii.n_findings}))
""")


def write_big(path: Path, size: int) -> int:
    """About ``size`` bytes of chat JSONL: long examples, with personal data, blank lines and lines
    that are not UTF-8 among them. Returns the number of lines."""
    answer = "Rome rewards slow walkers: the Forum at dawn, the Pantheon at noon, Trastevere at night. " * 12
    n = written = 0
    with path.open("wb") as f:
        while written < size:
            chunk = []
            for _ in range(1000):
                n += 1
                if n % 997 == 0:
                    chunk.append(b'{"messages": "caf\xe9"}')
                elif n % 500 == 0:
                    chunk.append(b"")
                else:
                    mail = " Mail me at ana.lopez@example.org" if n % 100 == 0 else ""
                    chunk.append(json.dumps({"messages": [
                        {"role": "system", "content": "You are a travel assistant."},
                        {"role": "user", "content": f"What should I see on day {n}?{mail}"},
                        {"role": "assistant", "content": answer}]}).encode())
            data = b"\n".join(chunk) + b"\n"
            f.write(data)
            written += len(data)
    return n


def measure(path: Path, *tokenizer_dir: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", MEASURE, str(path), *map(str, tokenizer_dir)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_memory_does_not_grow_with_the_file(tmp_path):
    """Before the report streamed, a 64 MB file took 343 MB more (every example kept, the file read
    twice); now about 5 MB: the per-example numbers and the cap on kept problems."""
    path = tmp_path / "big.jsonl"
    n_lines = write_big(path, 48 << 20)
    got = measure(path)
    size = path.stat().st_size
    assert got["n_errors"] == n_lines // 997 and got["n_findings"] == n_lines // 100 - n_lines // 500
    assert got["added_bytes"] < size / 4, f"{got['added_bytes'] / 2**20:.0f} MiB added for {size / 2**20:.0f} MiB"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_memory_with_token_statistics_does_not_grow_with_the_file(tmp_path, tiny_model_dir):
    """With a tokenizer the working set is a batch of examples and their tokens (about 18 MB with
    the tiny model), plus a few numbers per example and the tokenizer's own bounded word cache:
    a 12 MB larger file added 4.5 MB (before the report streamed, several times the file)."""
    small, big = tmp_path / "small.jsonl", tmp_path / "big.jsonl"
    write_big(small, 4 << 20)
    write_big(big, 16 << 20)
    a, b = measure(small, tiny_model_dir), measure(big, tiny_model_dir)
    assert b["n_examples"] > 3 * a["n_examples"]
    grown = b["added_bytes"] - a["added_bytes"]
    assert grown < big.stat().st_size - small.stat().st_size, f"{grown / 2**20:.0f} MiB more for a 4x file"
