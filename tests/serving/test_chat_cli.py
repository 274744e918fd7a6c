"""`tunery ask` and `tunery chat` on the tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from click.testing import CliRunner

from tunery.cli.main import cli


def test_ask_prints_the_answer_and_json(tiny_model):
    from tunery.chat import ChatMessage, Role
    from tunery.serving import GenerationParams
    from tunery.serving.local import LocalChatModel

    runner = CliRunner()
    r = runner.invoke(cli, ["ask", "tiny-random", "Where to?", "--seed", "3", "--max-tokens", "6", "--json",
                            "--system", "Be brief."])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)  # notices (say, a model served off the fast path) go to stderr
    want = LocalChatModel("tiny-random").generate(
        [ChatMessage(Role.SYSTEM, "Be brief."), ChatMessage(Role.USER, "Where to?")],
        GenerationParams(max_tokens=6, temperature=0.7, seed=3))
    assert out["answer"] == want.text and out["usage"] == want.usage.to_openai()
    plain = runner.invoke(cli, ["ask", "tiny-random", "-", "--seed", "3", "--max-tokens", "6", "--system", "Be brief."],
                          input="Where to?")
    assert plain.exit_code == 0 and plain.stdout.rstrip("\n") == want.text
    assert "finish reason: length" in plain.stderr or want.finish_reason == "stop"


def test_chat_streams_keeps_history_and_exits(tiny_model):
    runner = CliRunner()
    r = runner.invoke(cli, ["chat", "tiny-random", "--max-tokens", "4", "--system", "Be brief."],
                      input="Hello\n/reset\nRome?\n/exit\n")
    assert r.exit_code == 0, r.output
    assert r.output.count("bot>") == 2 and "(conversation cleared)" in r.output


def test_ask_an_unknown_model_is_one_line(tunery_home):
    r = subprocess.run([sys.executable, "-m", "tunery.cli.main", "ask", "nope", "hi"], capture_output=True, text=True,
                       timeout=120, env={**os.environ})
    assert r.returncode == 1 and "unknown model 'nope'" in r.stderr and "Traceback" not in r.stderr


def test_text_that_is_not_utf8_is_named_not_a_crash(tiny_model):
    """Bytes that are not UTF-8 reach Python as lone surrogates, which the tokenizer refused with an
    'unexpected TypeError'; a mistyped /command is not sent to the model."""
    runner = CliRunner()
    r = runner.invoke(cli, ["ask", "tiny-random", "-", "--max-tokens", "2"], input=b"\xff\xfeWhere to?")
    assert r.exit_code == 1 and str(r.exception) == ("the question read from stdin is not UTF-8 text (byte 1 cannot "
                                                     "be decoded) (give it as UTF-8 text)"), r.output
    r = runner.invoke(cli, ["ask", "tiny-random", "Where \udcff to?", "--max-tokens", "2"])  # argv's bad byte
    assert r.exit_code == 1 and "the question is not UTF-8 text (byte 7 cannot be decoded)" in str(r.exception)
    r = runner.invoke(cli, ["ask", "tiny-random", "Where to?", "--system", "\udcff"])
    assert r.exit_code == 1 and "--system is not UTF-8 text" in str(r.exception)
    r = runner.invoke(cli, ["chat", "tiny-random", "--max-tokens", "2"], input=b"\xffhi\n/rest\nRome?\n/exit\n")
    assert r.exit_code == 0, r.output
    assert "that line is not UTF-8 text (byte 1 cannot be decoded)" in r.output
    assert "(unknown command /rest: /reset starts over, /exit leaves)" in r.output
    assert r.output.count("bot>") == 1  # only Rome? was asked
