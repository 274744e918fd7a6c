"""Synthetic data from a scripted teacher: dedup, validation, drops reported, CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tunery.data.synth import load_topics, synthesize
from tunery.data.validate import validate_file
from tunery.errors import InvalidInput
from tunery.serving import ScriptedChatModel

SYSTEM = "You are a travel assistant. End with a question."


def teacher_reply(messages):
    user = messages[-1].content
    if messages[0].role.value == "user":  # asked for a question about a topic
        topic = user.rsplit("Topic: ", 1)[1]
        if topic == "visas":
            return "Question: Do I need a visa?"  # the same question every time: duplicates
        if topic == "silence":
            return "   "
        return f'"What about {topic}?"'
    if "beaches" in user:
        return ""  # an empty answer: invalid
    return f"Here is help with: {user} Shall we plan more?"


def test_synthesize_dedups_validates_and_reports():
    teacher = ScriptedChatModel(name="teacher", reply=teacher_reply)
    topics = ["museums", "visas", "beaches", "silence", "trains"]
    report = synthesize(teacher, system=SYSTEM, topics=topics, n=10, seed=1)
    questions = [e["messages"][1]["content"] for e in report.examples]
    assert sorted(questions) == sorted(["What about museums?"] * 1 + ["Do I need a visa?"]
                                       + ["What about trains?"] * 1)  # repeats of a question are dropped too
    assert report.requested == 10 and report.kept == 3
    assert report.dropped["duplicate question"] == 3  # 2nd museums, 2nd trains, 2nd visas
    assert report.dropped["the teacher wrote no question"] == 2
    assert sum(v for k, v in report.dropped.items() if k.startswith("invalid:")) == 2
    assert all(e["messages"][0] == {"role": "system", "content": SYSTEM} for e in report.examples)
    # the teacher saw the system message when answering, not when writing questions
    answering = [c for c, _ in teacher.calls if c[0].role.value == "system"]
    assert answering and all(c[0].content == SYSTEM for c in answering)


def test_topics_file_formats_and_errors(tmp_path):
    (tmp_path / "t.txt").write_text("# travel topics\nmuseums\n\ntrains\n")
    assert load_topics(tmp_path / "t.txt") == ["museums", "trains"]
    (tmp_path / "t.jsonl").write_text('{"topic": "food"}\n{"topic": "weather"}\n')
    assert load_topics(tmp_path / "t.jsonl") == ["food", "weather"]
    (tmp_path / "bad.jsonl").write_text('{"name": "x"}\n')
    with pytest.raises(InvalidInput, match="line 1"):
        load_topics(tmp_path / "bad.jsonl")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(InvalidInput, match="no topics"):
        load_topics(tmp_path / "empty.txt")


def test_cli_writes_a_valid_file(tmp_path, monkeypatch):
    from tunery.cli.main import cli
    from tunery.serving import resolve

    monkeypatch.setattr(resolve, "get_chat_model", lambda ref: ScriptedChatModel(name=ref, reply=teacher_reply))
    (tmp_path / "topics.txt").write_text("\n".join(f"city {i}" for i in range(12)))
    out = tmp_path / "synth.jsonl"
    r = CliRunner().invoke(cli, ["data", "synth", "--teacher", "big-model", "--system", SYSTEM, "--topics",
                                 str(tmp_path / "topics.txt"), "--n", "12", "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert summary["kept"] == 12 and summary["dropped"] == {}
    assert validate_file(out).ok
    r = CliRunner().invoke(cli, ["data", "synth", "--teacher", "x", "--topics", str(tmp_path / "topics.txt"),
                                 "--n", "2", "-o", str(out)])
    assert r.exit_code != 0 and "--system" in r.output


def _synth(tmp_path, monkeypatch, *args, reply=teacher_reply):
    from tunery.cli.main import cli
    from tunery.serving import resolve

    monkeypatch.setattr(resolve, "get_chat_model", lambda ref: ScriptedChatModel(name=ref, reply=reply))
    (tmp_path / "topics.txt").write_text("museums\ntrains\n")
    r = CliRunner().invoke(cli, ["data", "synth", "--teacher", "big-model", "--system", SYSTEM, "--topics",
                                 str(tmp_path / "topics.txt"), "--n", "2", *args])
    return r, r.output + str(r.exception)  # a domain error is shown by the CLI's edge (run_cli)


def test_cli_refuses_an_existing_output_before_asking_the_teacher(tmp_path, monkeypatch):
    out = tmp_path / "train.jsonl"
    out.write_text("my own examples\n")
    asked = []
    r, said = _synth(tmp_path, monkeypatch, "-o", str(out), reply=lambda m: asked.append(m) or "x")
    assert r.exit_code == 1 and "already exists" in said and "--force" in said, said
    assert out.read_text() == "my own examples\n" and not asked
    r, said = _synth(tmp_path, monkeypatch, "-o", str(tmp_path / "topics.txt"), "--force")
    assert r.exit_code == 1 and "would overwrite the input" in said, said
    r, said = _synth(tmp_path, monkeypatch, "-o", str(out), "--force")
    assert r.exit_code == 0, said
    assert validate_file(out, purpose="validation").ok


def test_cli_checks_sampling_options_and_writes_nothing_when_nothing_is_kept(tmp_path, monkeypatch):
    out = tmp_path / "synth.jsonl"
    for bad in (["--max-tokens", "0"], ["--temperature", "-1"]):
        r, said = _synth(tmp_path, monkeypatch, "-o", str(out), *bad)
        assert r.exit_code == 2 and bad[0] in said, said
    r, said = _synth(tmp_path, monkeypatch, "-o", str(out), reply=lambda m: "   ")
    assert r.exit_code == 1 and "dropped 2" in said and "no usable example" in said, said
    assert not out.exists()
    r, said = _synth(tmp_path, monkeypatch, "-o", str(out), "--topics", str(tmp_path))
    assert r.exit_code == 1 and "is a folder" in said, said
