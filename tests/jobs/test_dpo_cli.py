"""`tunery finetune --method dpo`: the request it builds, and the format checked against the method."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from tunery import db
from tunery.cli.main import cli
from tunery.jobs import list_jobs


def _pairs(path: Path, n: int = 10) -> Path:
    path.write_text("".join(json.dumps({
        "input": {"messages": [{"role": "user", "content": f"Where should I stay in town {i}?"}]},
        "preferred_output": [{"role": "assistant", "content": "The old town is central. When do you go?"}],
        "non_preferred_output": [{"role": "assistant", "content": "Book the Grand Hotel."}]}) + "\n"
        for i in range(n)))
    return path


def test_dpo_request_from_the_cli_and_formats_checked(tiny_model, chat_file, tmp_path):
    pairs = str(_pairs(tmp_path / "pairs.jsonl"))
    r = CliRunner().invoke(cli, ["finetune", pairs, "--model", "tiny-random", "--method", "dpo", "--beta", "0.3",
                                 "--n-epochs", "1", "--seed", "2", "--suffix", "pref"])
    assert r.exit_code == 0, r.output
    job = list_jobs(limit=1)[0][0]
    shown = CliRunner().invoke(cli, ["jobs", "show", job["id"]]).output
    assert " suffix  pref" in shown and " method  dpo" in shown, shown
    stored = db.loads(db.query("SELECT config FROM jobs WHERE id=?", (job["id"],))[0]["config"])
    assert stored["method"] == {"type": "dpo", "dpo": {"hyperparameters": {
        "n_epochs": 1, "batch_size": "auto", "learning_rate_multiplier": "auto", "beta": 0.3}}}
    assert stored["training_method"] == "lora"

    chat = str(chat_file(12))
    for args, flag, words in [
        # the fix in the CLI's words, not the request's (method {"type": "dpo"})
        ([pairs], "--method", "holds preference pairs, which supervised fine-tuning cannot train on (use --method dpo)"),
        ([chat, "--method", "dpo"], "--method", "which DPO cannot train on (use --method supervised, or a file"),
        ([chat, "--beta", "0.2"], "--beta", "add --method dpo"),
        ([pairs, "--method", "dpo", "--beta", "9"], "--beta", "between 0.001 and 2"),
        ([chat, "--method", "full", "--training-method", "lora"], "--training-method", "disagree"),
    ]:
        r = CliRunner().invoke(cli, ["finetune", *args, "--model", "tiny-random"])
        assert r.exit_code == 2 and flag in r.output and words in r.output, r.output
    # the older spelling of the training method still works
    r = CliRunner().invoke(cli, ["finetune", chat, "--model", "tiny-random", "--method", "full"])
    assert r.exit_code == 0, r.output
    assert list_jobs(limit=1)[0][0]["training_method"] == "full"
    assert len(list_jobs(limit=10)[0]) == 2
