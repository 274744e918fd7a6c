"""Text that is not UTF-8 (or not Unicode) in any file a user gives tunery is a named error, never
a crash: the line, the byte, and what to do. A byte-order mark at the start is accepted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from chatlines import good_lines, jsonl, line

from tunery.data import check_file, load_examples, read_lines, scrub_file, split_file, validate_bytes
from tunery.errors import InvalidInput

NOT_UTF8 = b'{"messages": "caf\xe9"}'  # Latin-1, as an old editor saves it
NOT_UTF8_ERROR = "line 3: not valid UTF-8 (byte 0xe9 at column 18): save the file as UTF-8"
# a JSON escape of half a surrogate pair: valid JSON, but no Unicode text (nor UTF-8) can hold it
LONE = '{"messages": [{"role": "user", "content": "caf\\ud800"}, {"role": "assistant", "content": "ok"}]}'


def bad_file(tmp_path: Path, bad: bytes, name: str = "data.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + jsonl(good_lines(2)) + bad + b"\n" + jsonl(good_lines(10, start=2)))
    return path


def test_a_lone_surrogate_is_named_with_its_field():
    report = validate_bytes(jsonl([*good_lines(10), LONE]))
    assert [i.format() for i in report.errors] == [
        "line 11, messages[0].content: not valid Unicode: a lone surrogate \\ud800 at character 4 (a "
        "\\ud800-\\udfff escape must be one half of a pair)"]
    json.dumps(report.to_dict()).encode("utf-8")  # printable, storable
    keyed = validate_bytes(jsonl([*good_lines(10), '{"messages": [], "\\udfff": 1}']))
    assert [(i.line, i.field) for i in keyed.errors] == [(11, None)]
    assert "a key holds a lone surrogate" in keyed.errors[0].message


def test_read_lines_names_the_line_and_drops_bom_and_crlf(tmp_path):
    ok = tmp_path / "ok.txt"
    ok.write_bytes(b"\xef\xbb\xbfone\r\ntwo\n\nthree")
    assert list(read_lines(ok)) == [(1, "one"), (2, "two"), (3, ""), (4, "three")]
    path = bad_file(tmp_path, NOT_UTF8)
    with pytest.raises(InvalidInput) as e:
        list(read_lines(path, param="data"))
    assert e.value.message == f"{path}, {NOT_UTF8_ERROR}" and e.value.param == "data"


def test_split_names_the_line(tmp_path):
    with pytest.raises(InvalidInput, match=NOT_UTF8_ERROR.replace("(", r"\(").replace(")", r"\)")):
        split_file(bad_file(tmp_path, NOT_UTF8), validation_fraction=0.5, seed=1)
    result = split_file(bad_file(tmp_path, b"", "bom.jsonl"), validation_fraction=0.5, seed=1)
    assert result.n_train + result.n_valid == 12  # the BOM is dropped, not made part of line 1


def test_scrub_never_fails_on_the_bytes(tmp_path):
    """The scrubber keeps what it cannot decode, byte for byte, and rewrites only what it found."""
    src = tmp_path / "in.jsonl"
    latin = b'{"messages": [{"role": "user", "content": "caf\xe9 bob@example.org"}]}'
    lone = LONE.replace("caf\\ud800", "caf\\ud800 ann@example.org").encode()
    src.write_bytes(latin + b"\n" + lone + b"\n")
    report = scrub_file(src, tmp_path / "out.jsonl")
    out = (tmp_path / "out.jsonl").read_bytes().split(b"\n")
    assert report.counts == {"EMAIL": 2} and out[2] == b""
    assert out[0] == b'{"messages": [{"role": "user", "content": "caf\xe9 [EMAIL]"}]}'
    assert json.loads(out[1])["messages"][0]["content"] == "caf\ud800 [EMAIL]"  # kept as the file had it


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le"])  # with and without a byte-order mark
def test_a_utf16_file_is_refused_not_scanned(tmp_path, encoding):
    """Read as UTF-8, UTF-16 text has a zero byte between its letters: no pattern would find the
    personal data in it, and the "scrubbed" copy would still hold all of it."""
    from click.testing import CliRunner

    from tunery.cli.main import cli

    src = tmp_path / "u16.jsonl"
    pii = '{"messages": [{"role": "user", "content": "ana@example.com, +44 20 7946 0958"}]}\n'
    src.write_bytes((pii * 4).encode(encoding))
    for scan in (lambda: check_file(src), lambda: scrub_file(src, tmp_path / "out.jsonl"),
                 lambda: split_file(src, validation_fraction=0.5, seed=1)):
        with pytest.raises(InvalidInput, match="u16.jsonl: the file is UTF-16 encoded: save it as UTF-8"):
            scan()
    assert [p.name for p in tmp_path.iterdir()] == ["u16.jsonl"]
    check = CliRunner().invoke(cli, ["data", "scrub", str(src), "--check"])
    assert check.exit_code == 1 and "UTF-16" in str(check.exception)


def test_the_trainer_and_the_calibration_name_the_line(tmp_path):
    with pytest.raises(InvalidInput) as e:
        load_examples(bad_file(tmp_path, NOT_UTF8), purpose="validation")
    assert NOT_UTF8_ERROR in e.value.message
    with pytest.raises(InvalidInput) as e:
        load_examples(bad_file(tmp_path, LONE.encode(), "lone.jsonl"), purpose="validation")
    assert "line 3, messages[0].content: not valid Unicode" in e.value.message


def test_eval_flow_and_topic_files_name_the_line(tmp_path):
    from tunery.data.synth import load_topics
    from tunery.evals import load_questions, system_from_chat_file
    from tunery.evals.similarity import load_reference_texts
    from tunery.flows.mapping import load_data

    questions = tmp_path / "q.jsonl"
    questions.write_bytes(b'\xef\xbb\xbf{"question": "Rome?"}\n{"question": "Caf\xe9?"}\n')
    csv_file = tmp_path / "rows.csv"
    csv_file.write_bytes(b"\xef\xbb\xbfquestion,answer\nRome?,yes\nCaf\xe9?,no\n")
    topics = tmp_path / "topics.txt"
    topics.write_bytes(b"Rome\nCaf\xe9\n")
    chat = tmp_path / "chat.jsonl"
    chat.write_bytes(NOT_UTF8 + b"\n" + jsonl(good_lines(1)))  # the system message comes after the bad line
    for read, path, where in ((load_questions, questions, "line 2"), (load_data, questions, "line 2"),
                              (load_data, csv_file, "line 3"), (load_topics, topics, "line 2"),
                              (load_reference_texts, questions, "line 2"), (system_from_chat_file, chat, "line 1")):
        with pytest.raises(InvalidInput) as e:
            read(path)
        assert f"{path}, {where}: not valid UTF-8 (byte 0xe9 at column" in e.value.message, read
    questions.write_bytes(b'\xef\xbb\xbf{"question": "Rome?"}\n')
    csv_file.write_bytes(b"\xef\xbb\xbfquestion,answer\nRome?,yes\n")
    assert load_questions(questions) == [{"question": "Rome?"}] == load_data(questions)
    assert load_data(csv_file) == [{"question": "Rome?", "answer": "yes"}]  # no BOM in the first column


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from tunery.cli.main import main; main()", "data", *args],
                          capture_output=True, text=True, timeout=120)


def test_the_cli_names_the_line_exits_1_and_shows_no_traceback(tmp_path):
    """`data validate` once ended with exit 2 and a UnicodeEncodeError on a lone surrogate."""
    lone = bad_file(tmp_path, LONE.encode(), "lone.jsonl")
    latin = bad_file(tmp_path, NOT_UTF8, "latin.jsonl")
    for args, needle in ((("validate", str(lone)), "line 3, messages[0].content: not valid Unicode"),
                         (("validate", str(latin)), NOT_UTF8_ERROR),
                         (("split", str(latin), "-f", "0.5"), NOT_UTF8_ERROR)):
        proc = run_cli(*args)
        out = " ".join((proc.stdout + proc.stderr).split())  # the terminal's width wraps the line
        assert proc.returncode == 1 and needle in out and "Traceback" not in out, (args, out)
    proc = run_cli("scrub", str(lone), "--check")
    assert proc.returncode == 0 and "Traceback" not in proc.stdout + proc.stderr


def test_stats_counts_the_valid_examples_and_names_the_rest(tmp_path, tiny_model):
    from click.testing import CliRunner

    from tunery.cli.main import cli

    path = tmp_path / "mixed.jsonl"
    path.write_bytes(jsonl(good_lines(10)) + LONE.encode() + b"\n" + NOT_UTF8 + b"\n")
    result = CliRunner().invoke(cli, ["data", "stats", str(path), "--model", "tiny-random", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_examples"] == 10
    assert "2 problem(s) on 2 line(s)" in result.stderr


def test_a_line_of_text_is_split_at_newlines_only(tmp_path):
    """A JSON string may hold U+2028 raw; splitting text at every Unicode line break cut such a line."""
    path = tmp_path / "q.jsonl"
    path.write_text(line({"question": "Rome\u2028or Paris?"}) + "\n", encoding="utf-8")
    from tunery.evals import load_questions

    assert load_questions(path) == [{"question": "Rome\u2028or Paris?"}]
