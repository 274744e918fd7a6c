"""`tunery data ...` through click's runner, and a few real processes to prove exit codes and that
no traceback reaches the user."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from chatlines import good_lines, jsonl, line
from click.testing import CliRunner

from tunery.cli.main import cli
from tunery.errors import InvalidInput


def invoke(*args: str):
    return CliRunner().invoke(cli, ["data", *args])


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.jsonl"
    path.write_bytes(jsonl(good_lines(10)))
    return path


@pytest.fixture
def bad(tmp_path: Path) -> Path:
    lines = good_lines(10)
    lines[4] = line({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                                  {"role": "assistant", "content": "c", "weight": 0.5}]})
    path = tmp_path / "bad.jsonl"
    path.write_bytes(jsonl(lines) + b"\n")
    return path


def test_validate_valid_file(good: Path):
    result = invoke("validate", str(good))
    assert result.exit_code == 0, result.output
    assert "valid: 10 valid examples in 10 lines, 0 errors, 0 warnings" in result.output


def test_validate_invalid_file_lists_every_problem(bad: Path):
    result = invoke("validate", str(bad))
    assert result.exit_code == 1
    assert "error  line 5, messages[1].role: two consecutive user messages" in result.output
    assert "error  line 5, messages[2].weight: weight must be 0 or 1, got 0.5" in result.output
    assert "warning  blank line 11 skipped" in result.output
    assert "invalid: 9 valid examples in 11 lines, 2 errors, 1 warning" in result.output


def test_validate_json_and_limit(bad: Path):
    result = invoke("validate", str(bad), "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["ok"] is False and report["n_errors"] == 2
    limited = invoke("validate", str(bad), "--limit", "1")
    assert "... and 2 more (see them all with --limit 0)" in limited.output
    negative = invoke("validate", str(bad), "--limit", "-1")  # was taken as 0 (all) without a word
    assert negative.exit_code == 2 and "--limit" in negative.output


def test_validate_purpose_validation_allows_few_examples(tmp_path: Path):
    path = tmp_path / "few.jsonl"
    path.write_bytes(jsonl(good_lines(3)))
    assert invoke("validate", str(path)).exit_code == 1
    result = invoke("validate", str(path), "--purpose", "validation")
    assert result.exit_code == 0 and "warning  only 3 examples" in result.output


def test_stats_with_the_tiny_model(tiny_model, good: Path):
    from tunery.data import load_examples, token_stats
    from tunery.models.loading import load_tokenizer

    result = invoke("stats", str(good), "--model", "tiny-random", "--n-epochs", "2", "--json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    want = token_stats(load_examples(good), load_tokenizer("tiny-random"), context_length=1024, n_epochs=2)
    assert got == {"file": str(good), "model": "tiny-random", **json.loads(json.dumps(want.to_dict()))}
    table = invoke("stats", str(good), "--model", "tiny-random")
    assert table.exit_code == 0 and "tokens per example" in table.output
    assert f"{3 * want.total_tokens:,} ({want.total_tokens:,} x 3 epochs)" in table.output


def test_stats_of_a_file_without_examples(tiny_model, tmp_path: Path):
    path = tmp_path / "junk.jsonl"
    path.write_bytes(b"not json\n")
    result = invoke("stats", str(path), "--model", "tiny-random")
    assert isinstance(result.exception, InvalidInput) and "has no valid examples" in str(result.exception)
    # the first problem is named, not only "run validate": once a UTF-16 file said no more than that
    path.write_bytes("\n".join(good_lines(2)).encode("utf-16"))
    utf16 = invoke("stats", str(path), "--model", "tiny-random")
    assert utf16.exception.message == f"{path} has no valid examples: the file is UTF-16 encoded: save it as UTF-8"


def test_stats_reads_a_pipe_once(tiny_model, tmp_path: Path):
    """Once the format was read from the file, then the examples from the file again: a pipe
    (/dev/stdin) was empty by then, and stats said it had no valid examples."""
    pairs = [{"input": {"messages": [{"role": "user", "content": f"Where in Rome, day {i}?"}]},
              "preferred_output": [{"role": "assistant", "content": "The Forum."}],
              "non_preferred_output": [{"role": "assistant", "content": "Nowhere."}]} for i in range(3)]
    for data, key, n in ((jsonl(good_lines(12)), "n_examples", 12), (jsonl(pairs), "n_pairs", 3)):
        proc = run_cli("stats", "/dev/stdin", "--model", "tiny-random", "--json", input=data.decode())
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)[key] == n


def test_scrub_writes_a_copy_and_check_exits_1(tmp_path: Path):
    src = tmp_path / "pii.jsonl"
    src.write_bytes(jsonl([{"messages": [{"role": "user", "content": "I am ana@example.com"},
                                         {"role": "assistant", "content": "Hi"}]}]))
    out = tmp_path / "clean.jsonl"
    result = invoke("scrub", str(src), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "line 1, messages[0].content: EMAIL an***********om" in result.output
    assert "ana@example.com" not in result.output  # the finding is shown masked
    assert "[EMAIL]" in out.read_text() and "ana@" not in out.read_text()
    assert invoke("scrub", str(src), "--check").exit_code == 1
    clean = invoke("scrub", str(out), "--check")
    assert clean.exit_code == 0 and "found nothing on 0 of 1 lines" in clean.output


def test_scrub_needs_an_output(tmp_path: Path, good: Path):
    result = invoke("scrub", str(good))
    assert isinstance(result.exception, InvalidInput) and "-o OUT" in str(result.exception)


def test_scrub_check_with_an_output_is_refused(tmp_path: Path, good: Path):
    """Once -o was ignored under --check: no copy, and not a word about it."""
    result = invoke("scrub", str(good), "--check", "-o", str(tmp_path / "clean.jsonl"))
    assert result.exit_code == 2 and "--check only reports and writes nothing" in result.output
    assert not (tmp_path / "clean.jsonl").exists()


def test_scrub_refuses_to_write_over_its_input(good: Path):
    before = good.read_bytes()
    result = invoke("scrub", str(good), "-o", str(good.parent / "." / good.name))
    assert isinstance(result.exception, InvalidInput) and "overwrite the input" in str(result.exception)
    assert good.read_bytes() == before
    same = invoke("scrub", str(good), "-o", str(good))
    assert isinstance(same.exception, InvalidInput)


def test_scrub_replaces_an_existing_output_only_with_force(tmp_path: Path, good: Path):
    from tunery.errors import Conflict

    out = tmp_path / "mine.jsonl"
    out.write_text("the user's own file\n")
    result = invoke("scrub", str(good), "-o", str(out))
    assert isinstance(result.exception, Conflict) and "mine.jsonl already exists" in str(result.exception)
    assert "--force" in result.exception.hint and out.read_text() == "the user's own file\n"
    assert invoke("scrub", str(good), "-o", str(out), "--force").exit_code == 0
    assert out.read_bytes() == good.read_bytes()  # nothing to scrub: copied as it was


def test_split_writes_beside_the_input(tmp_path: Path):
    src = tmp_path / "trips.jsonl"
    src.write_bytes(jsonl(good_lines(20)))
    result = invoke("split", str(src), "--validation-fraction", "0.2", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "trips.train.jsonl").read_bytes().splitlines()) == 16
    assert len((tmp_path / "trips.valid.jsonl").read_bytes().splitlines()) == 4
    prefixed = invoke("split", str(src), "-f", "0.5", "--seed", "3", "-o", str(tmp_path / "p"), "--json")
    assert json.loads(prefixed.output)["n_valid"] == 10 and (tmp_path / "p.valid.jsonl").exists()


def test_split_keeps_existing_outputs_unless_forced(tmp_path: Path):
    src = tmp_path / "two.jsonl"
    src.write_bytes(jsonl(good_lines(2)))
    first = invoke("split", str(src))
    said = " ".join(first.output.split())  # the terminal's width wraps the line
    assert first.exit_code == 0 and said.endswith("two.train.jsonl (1 example) and " + str(tmp_path / "two.valid.jsonl")
                                                  + " (1 example)"), said
    (tmp_path / "two.train.jsonl").write_text("mine\n")
    again = invoke("split", str(src))
    assert again.exit_code == 1 and "--force" in str(again.exception)
    assert (tmp_path / "two.train.jsonl").read_text() == "mine\n"
    assert invoke("split", str(src), "--force").exit_code == 0
    assert (tmp_path / "two.train.jsonl").read_bytes() != b"mine\n"


def run_cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from tunery.cli.main import main; main()", "data", *args],
                          capture_output=True, text=True, timeout=120, **kw)


def test_real_process_exit_codes_and_no_traceback(tmp_path: Path, bad: Path, good: Path):
    ok = run_cli("validate", str(good))
    assert ok.returncode == 0, ok.stderr
    invalid = run_cli("validate", str(bad))
    assert invalid.returncode == 1 and "two consecutive user messages" in invalid.stdout
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 8)
    for proc, needle in ((run_cli("validate", str(junk)), "not valid UTF-8"),
                         (run_cli("validate", str(tmp_path / "missing.jsonl")), "error: file not found"),
                         (run_cli("split", str(good), "-f", "1.5", "--seed", "1"), "between 0 and 1")):
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert needle in proc.stdout + proc.stderr
        assert "Traceback" not in proc.stdout + proc.stderr


def test_an_output_that_cannot_be_written_is_named(tmp_path: Path, good: Path):
    """Once `unexpected FileExistsError` (a parent that is a file) and `unexpected FileNotFoundError`
    naming a temporary file (a folder that cannot be written)."""
    cases = [(("split", str(good), "-o", str(good / "x")), f"cannot write {good}/x.train.jsonl: {good} is a file, "
                                                            "not a folder"),
             (("scrub", str(good), "-o", str(good / "a" / "out.jsonl")), f"{good} is a file, not a folder")]
    if Path("/proc/self").is_dir():  # Linux: no file can be made there, whoever runs the test
        cases.append((("scrub", str(good), "-o", "/proc/out.jsonl"),
                       "cannot write /proc/out.jsonl: the folder /proc cannot be written"))
    for args, needle in cases:
        proc = run_cli(*args, env={**os.environ, "COLUMNS": "1000"})  # long paths on one line
        out = proc.stdout + proc.stderr
        assert proc.returncode == 1 and needle in out, (args, out)
        assert "unexpected" not in out and ".tmp" not in out and "Traceback" not in out


def test_a_dash_is_standard_input_and_split_then_asks_for_a_prefix(good: Path, tmp_path: Path):
    """``-`` reads standard input (a pipe here); split cannot name its outputs after it, and wrote
    /dev/stdin.train.jsonl as root before it asked for -o."""
    data = good.read_text()
    r = run_cli("validate", "-", input=data)
    assert r.returncode == 0 and "valid" in r.stdout, r.stdout + r.stderr
    r = run_cli("split", "-", input=data)
    assert r.returncode == 2 and "give -o PREFIX" in r.stderr, r.stderr
    r = run_cli("split", str(tmp_path))  # a folder: not told to give -o, which would not help
    assert r.returncode == 2 and "is a folder: give the JSONL file" in r.stderr and "give -o" not in r.stderr, r.stderr
    r = run_cli("split", "-", "-o", str(tmp_path / "piped"), input=data)
    assert r.returncode == 0, r.stderr
    out = (tmp_path / "piped.train.jsonl").read_text() + (tmp_path / "piped.valid.jsonl").read_text()
    assert sorted(out.splitlines()) == sorted(data.splitlines())
