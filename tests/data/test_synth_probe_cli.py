"""What a daily user of `tunery data synth` hits: pure JSON on stdout with --json, and a run that
stops at once when it is interrupted."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from tunery.chat import Role
from tunery.data.synth import synthesize
from tunery.serving import ScriptedChatModel

SYSTEM = "You are a travel assistant. End with a question."


def test_json_output_is_the_json_alone(tmp_path, monkeypatch):
    from tunery.cli.main import cli
    from tunery.serving import resolve

    def reply(messages):
        return "Where to go?" if messages[0].role is Role.USER else "Rome. Shall we plan more?"

    monkeypatch.setattr(resolve, "get_chat_model", lambda ref: ScriptedChatModel(name=ref, reply=reply))
    (tmp_path / "topics.txt").write_text("museums\n")
    r = CliRunner().invoke(cli, ["data", "synth", "--teacher", "big-model", "--system", SYSTEM, "--topics",
                                 str(tmp_path / "topics.txt"), "--n", "3", "-o", str(tmp_path / "out.jsonl"),
                                 "--json"])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("{"), repr(r.stdout[:40])  # no line left by the progress bar
    assert json.loads(r.stdout)["kept"] == 1


class Interrupted(ScriptedChatModel):
    """Ctrl-C reaches the first request (as it reaches the thread waiting on its answer); the others
    are slow enough to be in flight when it does."""

    def generate(self, messages, params):
        if params.seed == 0 and messages[0].role is Role.USER:
            raise KeyboardInterrupt
        time.sleep(0.5)
        return super().generate(messages, params)


def test_an_interrupted_run_asks_the_teacher_no_more():
    teacher = Interrupted(name="teacher", parallel_requests=8, reply=lambda messages: "Where to go?")
    with pytest.raises(KeyboardInterrupt):
        synthesize(teacher, system=SYSTEM, topics=["museums"], n=100, seed=0)
    questions = [c for c, _ in teacher.calls if c[0].role is Role.USER]
    answers = [c for c, _ in teacher.calls if c[0].role is Role.SYSTEM]
    assert len(questions) <= 8, f"{len(questions)} questions asked after the interrupt"  # those in flight
    assert answers == [], f"{len(answers)} answers asked after the interrupt"
