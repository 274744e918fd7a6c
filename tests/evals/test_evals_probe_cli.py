"""What a daily user of `tunery eval` hits: pure JSON on stdout, a malformed evaluator spec named as
such, a run that stops at once when it is interrupted, and a report folder that cannot be made
refused before any answer is generated."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from tunery.cli.main import cli
from tunery.errors import InvalidInput
from tunery.evals import parse_evaluator, run_eval
from tunery.home import CannotWrite
from tunery.serving.clients import ScriptedChatModel


@pytest.fixture
def scripted(monkeypatch):
    from tunery.serving import resolve

    monkeypatch.setattr(
        resolve,
        "get_chat_model",
        lambda ref, *, precision=None: ScriptedChatModel(name=ref, replies=["Rome! Why?"]),
    )


@pytest.fixture
def questions(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "Where should I stay?"}\n{"question": "What should I eat?"}\n')
    return path


@pytest.mark.parametrize(
    "command", [["eval", "run", "-m", "a", "-m", "b", "--data"], ["compare", "a", "b", "--questions"]]
)
def test_json_output_is_the_json_alone(scripted, questions, tmp_path, command):
    result = CliRunner().invoke(
        cli,
        [*command, str(questions), "-e", "ends_with_question", "--json", "--out", str(tmp_path / "report")],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("{"), repr(result.stdout[:40])  # no line left by the progress bar
    assert json.loads(result.stdout)["report_dir"] == str(tmp_path / "report")


@pytest.mark.parametrize("spec", ["recommends[expect", "recommends[expect=]", "max_words[expect=answer]:80"])
def test_a_malformed_subset_is_named_as_such(spec):
    with pytest.raises(InvalidInput) as e:
        parse_evaluator(spec)
    assert "[COLUMN=VALUE]" in e.value.message and "unknown evaluator" not in e.value.message


class Slow(ScriptedChatModel):
    def generate(self, messages, params):
        time.sleep(0.02)
        return super().generate(messages, params)


class Broken(ScriptedChatModel):
    def generate(self, messages, params):
        raise KeyboardInterrupt  # as Ctrl-C reaches the thread waiting on the answers


@pytest.mark.parametrize("parallel", [1, 8])
def test_an_interrupted_run_asks_no_more_questions(parallel):
    rows = [{"question": f"question {i}?"} for i in range(200)]
    slow = Slow(name="slow", parallel_requests=parallel)
    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        run_eval(rows, {"broken": Broken(name="broken"), "slow": slow}, [], write=False, concurrency=2)
    assert len(slow.calls) < 20, f"{len(slow.calls)} questions asked after the interrupt"
    assert time.perf_counter() - started < 2


def test_a_report_folder_that_cannot_be_made_is_refused_before_any_question(monkeypatch, questions, tmp_path):
    from tunery.serving import resolve

    model = ScriptedChatModel(name="m")
    monkeypatch.setattr(resolve, "get_chat_model", lambda ref, *, precision=None: model)
    (tmp_path / "a-file").write_text("")
    result = CliRunner().invoke(
        cli,
        ["eval", "run", "--data", str(questions), "-m", "m", "--out", str(tmp_path / "a-file" / "report")],
    )
    assert isinstance(result.exception, CannotWrite), result.output  # the CLI's edge shows it as one line
    assert "a-file is a file, not a folder" in str(result.exception)
    assert model.calls == []  # said before the answers were generated, not after
