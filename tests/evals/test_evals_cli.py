"""`tunery eval run|list` and `tunery compare` with scripted models in place of real ones."""

from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner

from tunery.cli.main import cli, main
from tunery.serving.clients import ScriptedChatModel

REPLIES = {"base": ["I recommend the Hotel Artemide.", "Try Osteria Francescana."],
           "tuned": ["Trastevere is lovely! What's your budget?", "Pasta! Which dish do you fancy?"]}


@pytest.fixture
def scripted(monkeypatch):
    from tunery.serving import resolve

    made: dict[str, ScriptedChatModel] = {}

    def fake(ref: str, *, precision: str | None = None) -> ScriptedChatModel:
        made[ref] = ScriptedChatModel(name=ref, replies=REPLIES.get(ref, ["5"]))
        return made[ref]

    monkeypatch.setattr(resolve, "get_chat_model", fake)
    return made


@pytest.fixture
def questions(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "Where should I stay?"}\n{"question": "What should I eat?"}\n')
    return path


@pytest.fixture
def train(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "system", "content": "Be a travel agent. No hotels."},
                                             {"role": "user", "content": "hi"},
                                             {"role": "assistant", "content": "Hello! Where to?"}]}) + "\n")
    return path


def test_eval_run_writes_the_report_folder(scripted, questions, train, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    out = tmp_path / "report"
    result = CliRunner().invoke(cli, ["eval", "run", "--data", str(questions), "-m", "base", "-m", "tuned",
                                      "--system-from", str(train), "-e", "recommends", "-e", "ends_with_question",
                                      "-e", "judge:fluency@judge", "--max-tokens", "32", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {"results.jsonl", "summary.json", "report.html"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["summary"]["base"]["recommends"]["pass_rate"] == 0.0
    assert summary["summary"]["tuned"]["ends_with_question"]["pass_rate"] == 1.0
    assert summary["metrics_meta"]["judge:fluency@judge"]["judge"] == "judge"
    assert summary["system"] == "Be a travel agent. No hotels."
    messages, params = scripted["base"].calls[0]
    assert messages[0].content == "Be a travel agent. No hotels." and params.max_tokens == 32
    assert "Trastevere is lovely!" in result.output and "recommends" in result.output


def test_compare_prints_the_table_and_json(scripted, questions, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps the table to the terminal's width
    result = CliRunner().invoke(cli, ["compare", "base", "tuned", "--questions", str(questions), "--system", "S",
                                      "--out", str(tmp_path / "c"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["compare"] == {"base": "base", "tuned": "tuned"}
    assert data["metrics"] == ["recommends", "ends_with_question"]  # the default checks
    assert data["deltas"]["recommends"]["pass_rate_delta"] == 1.0
    assert data["report_dir"] == str(tmp_path / "c")

    table = CliRunner().invoke(cli, ["compare", "base", "tuned", "--questions", str(questions), "--limit", "1",
                                     "--out", str(tmp_path / "d")])
    assert table.exit_code == 0, table.output
    assert "Δ tuned − base" in table.output and "Hotel Artemide" in table.output
    assert "What should I eat?" not in table.output  # --limit 1


def test_eval_list_names_every_evaluator():
    from tunery.evals import EVALUATORS

    result = CliRunner().invoke(cli, ["eval", "list"], terminal_width=200)
    assert result.exit_code == 0
    for name in EVALUATORS:
        assert name in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["-e", "nonsense"], "unknown evaluator 'nonsense'"),
    (["-e", "max_words:many"], "needs a whole number"),
    (["--question-key", "prompt"], "no text in column 'prompt'"),
])
def test_bad_input_is_one_line_and_a_non_zero_exit(scripted, questions, monkeypatch, capsys, args, message):
    monkeypatch.setattr(sys, "argv", ["tunery", "eval", "run", "--data", str(questions), "-m", "base", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert scripted == {}  # nothing was loaded, nothing generated


def test_eval_run_with_the_real_local_engine(tiny_model, tiny_model_dir, questions, tmp_path):
    # no fakes: references resolve through tunery.serving to the in-process engine
    from tunery.models import ModelRecord, register

    register(ModelRecord(id="tiny-twin", kind="base", path=tiny_model_dir, source="builtin-tiny",
                         meta=dict(tiny_model.meta)))
    out = tmp_path / "real"
    result = CliRunner().invoke(cli, ["eval", "run", "--data", str(questions), "-m", "tiny-random", "-m", "tiny-twin",
                                      "-e", "max_words:50", "--max-tokens", "8", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["model"], r["index"]) for r in rows] == [("tiny-random", 0), ("tiny-twin", 0), ("tiny-random", 1),
                                                        ("tiny-twin", 1)]
    # the same weights, greedy decoding: both models give the same answers
    assert rows[0]["answer"] == rows[1]["answer"] and rows[2]["answer"] == rows[3]["answer"]
    assert all(r["scores"]["max_words:50"]["passed"] for r in rows)  # 8 tokens cannot make 50 words


def test_an_out_folder_holding_other_files_is_refused_before_any_answer(scripted, questions, tmp_path):
    """The report replaces its folder whole: a folder of the user's own is refused, not emptied;
    an earlier report in it is replaced."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("the user's own notes\n")
    args = ["eval", "run", "--data", str(questions), "-m", "base", "-e", "recommends", "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and "is not an eval report folder (it holds notes.txt)" in str(result.exception)
    assert (out / "notes.txt").read_text() == "the user's own notes\n" and not scripted["base"].calls
    result = CliRunner().invoke(cli, ["compare", "base", "tuned", "--questions", str(questions), "--out", str(out)])
    assert result.exit_code == 1 and "--out" in result.exception.hint
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    (out / "notes.txt").unlink()
    assert CliRunner().invoke(cli, args).exit_code == 0  # an empty folder
    assert CliRunner().invoke(cli, args).exit_code == 0  # an earlier report, replaced
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "results.jsonl", "summary.json"]


def test_question_files_that_are_not_json_are_named_not_crashed_on(scripted, tmp_path):
    """A line nested past Python's recursion limit or holding an over-long number was an
    'unexpected' RecursionError/AttributeError; every bad line says why, as `tunery data validate`
    words it."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "ok"}\n' + "[" * 100_000 + "]" * 100_000 + "\n" + '{"question": 1' + "1" * 5000
                   + "}\n{oops\n[1]\n")
    result = CliRunner().invoke(cli, ["eval", "run", "--data", str(bad), "-m", "base"])
    message = result.exception.message
    assert result.exit_code == 1 and "line 2: not valid JSON: nested too deeply" in message, result.output
    assert "line 3: not valid JSON: a number is too long (more than 4300 digits)" in message
    assert "line 4: not valid JSON: Expecting property name enclosed in double quotes at column 2" in message
    assert "line 5: expected a JSON object, got a list" in message
    # the same lines as the system message's file and a style reference
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "ok"}\n')
    result = CliRunner().invoke(cli, ["eval", "run", "--data", str(questions), "-m", "base", "--system-from",
                                      str(bad)])
    assert result.exit_code == 1 and "has no system message" in result.exception.message
    result = CliRunner().invoke(cli, ["eval", "run", "--data", str(questions), "-m", "base", "-e",
                                      f"style_similarity:file={bad}"])
    assert result.exit_code == 1 and "line 2: not valid JSON: nested too deeply" in result.exception.message


def test_limit_reads_only_the_first_n_questions(scripted, tmp_path):
    """--limit N asks the first N questions: a bad line after them does not stop the run (it was
    read and refused before), a bad one among them gives the error it gives without --limit."""
    data = tmp_path / "q.jsonl"
    data.write_text('{"question": "Where should I stay?"}\n\n{"question": "What should I eat?"}\n'
                    '{"prompt": "no question here"}\n{oops\n')
    for cmd in (["eval", "run", "--data", str(data), "-m", "base"],
                ["compare", "base", "tuned", "--questions", str(data)]):
        result = CliRunner().invoke(cli, [*cmd, "-e", "max_words:80", "--limit", "2", "--json",
                                          "--out", str(tmp_path / cmd[0])])
        assert result.exit_code == 0, result.output
        asked = [messages[-1].content for messages, _ in scripted["base"].calls]
        assert asked == ["Where should I stay?", "What should I eat?"]
        result = CliRunner().invoke(cli, [*cmd, "--limit", "3"])
        assert result.exit_code == 1 and "line 4: no text in column 'question' (columns: prompt)" in \
            result.exception.message, result.output
        assert "line 5" not in result.exception.message  # past the third question: not read
        result = CliRunner().invoke(cli, cmd)
        assert "line 4: no text" in result.exception.message and "line 5: not valid JSON" in result.exception.message


def test_limit_stops_at_bad_json_too(tmp_path):
    """Lines that are not JSON count towards the limit like any other bad line."""
    from tunery.errors import InvalidInput
    from tunery.evals import load_questions

    data = tmp_path / "q.jsonl"
    data.write_text('{"question": "Where should I stay?"}\n{bad\n{bad\n{bad\n')
    with pytest.raises(InvalidInput) as e:
        load_questions(data, limit=2)
    assert "line 2: not valid JSON" in e.value.message and "line 3" not in e.value.message
    assert [q["question"] for q in load_questions(data, limit=1)] == ["Where should I stay?"]


def test_the_system_message_is_found_in_a_file_of_preference_pairs_too(tmp_path):
    from tunery.evals import system_from_chat_file
    from tunery.examples import TRAVEL_PREFERENCES, TRAVEL_TRAIN

    assert system_from_chat_file(TRAVEL_PREFERENCES) == system_from_chat_file(TRAVEL_TRAIN)
    odd = tmp_path / "odd.jsonl"
    odd.write_text('{"messages": "not a list"}\n[1]\n{"input": {"messages": [{"role": "system", "content": "S"}]}}\n')
    assert system_from_chat_file(odd) == "S"
