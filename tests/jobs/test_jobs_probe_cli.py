"""What a daily user of `tunery jobs`, `finetune` and `models` hits: events, errors, names and paths
shown as the text they are (never read as terminal markup), a job with nothing to list saying so,
and options that would be ignored refused."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from tunery.cli.main import cli
from tunery.data import files
from tunery.jobs import Worker, create_job, get_job


def _failed_job(tmp_path) -> str:
    """A job failed in validation, whose error quotes the data: a role written like a closing tag."""
    bad = tmp_path / "bad.jsonl"
    row = {"messages": [{"role": "[/bold]", "content": "q"}, {"role": "assistant", "content": "a"}]}
    bad.write_text((json.dumps(row) + "\n") * 12)
    job = create_job(model="tiny-random", training_file=files.create_from_path(bad).id)
    worker, deadline = Worker(), time.monotonic() + 60
    while get_job(job["id"])["status"] != "failed" and time.monotonic() < deadline:
        worker.run_once()
    assert get_job(job["id"])["status"] == "failed"
    return job["id"]


def test_events_and_errors_that_look_like_markup_are_shown_as_text(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    job_id = _failed_job(tmp_path)
    events = CliRunner().invoke(cli, ["jobs", "events", job_id])
    assert events.exit_code == 0, events.output
    assert 'unknown role "[/bold]"' in events.output
    follow = CliRunner().invoke(cli, ["jobs", "follow", job_id, "--no-run-worker"])
    assert follow.exit_code == 1, follow.output  # the job failed: said, not a crash (exit 2)
    assert f"Job {job_id}: failed" in follow.output
    assert follow.output.count('unknown role "[/bold]"') >= 2  # in the event, and in the summary's error
    assert "None" not in follow.output  # a bar that never learnt the step count says "?", not "None"


def test_a_job_without_checkpoints_says_so(tiny_model, tmp_path):
    job_id = _failed_job(tmp_path)
    r = CliRunner().invoke(cli, ["jobs", "checkpoints", job_id])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("No checkpoints yet")
    r = CliRunner().invoke(cli, ["jobs", "checkpoints", job_id, "--json"])
    assert json.loads(r.output) == []


def test_lora_settings_with_full_fine_tuning_are_refused_not_ignored(tiny_model, chat_file):
    from tunery.jobs import list_jobs

    path = str(chat_file(12))
    for args in (["--training-method", "full"], ["--method", "full"]):
        r = CliRunner().invoke(
            cli, ["finetune", path, "-m", "tiny-random", *args, "--lora-r", "4", "--lora-layers", "1"]
        )
        assert r.exit_code == 2, r.output
        assert "--lora-r, --lora-layers" in r.output and "--training-method lora" in r.output
    assert list_jobs()[0] == []  # no job was made


def test_models_add_shows_names_and_paths_as_text(tiny_model_dir, tmp_path):
    import shutil

    from tunery.errors import InvalidInput

    r = CliRunner().invoke(cli, ["models", "add", "[/x]", str(tiny_model_dir)])
    assert isinstance(r.exception, InvalidInput), r.output  # the bad name is named, not a markup crash
    assert "invalid model name '[/x]'" in r.exception.message
    path = tmp_path / "[" / "y]" / "model"  # a folder named like a closing tag
    shutil.copytree(tiny_model_dir, path)
    r = CliRunner().invoke(cli, ["models", "add", "mine", str(path)])
    assert r.exit_code == 0, r.output
    assert f"added:mine(local:{path})" in "".join(r.output.split())  # the console may wrap the long path


@pytest.fixture
def no_background_worker():
    """The home's worker lock held, as a running worker holds it: ``finetune`` without ``--wait``
    then starts no background worker, which would train after the test on CI's shared cores."""
    from tunery.home import home
    from tunery.jobs.runner import try_lock

    lock = try_lock(home().root / "worker.lock")
    assert lock is not None
    yield
    lock.close()


def test_finetune_reads_a_pipe_once_and_trains_on_all_of_it(tiny_model, chat_file, tmp_path, no_background_worker):
    """``tunery finetune /dev/stdin`` (or ``<(...)``): validation emptied the pipe, and the upload
    then said "file not found". The pipe is read once into a file that every step reads."""
    import os
    import threading

    from tunery.jobs import list_jobs

    data = chat_file(12).read_bytes()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "wb") as f:
            f.write(data)

    threading.Thread(target=feed, daemon=True).start()
    r = CliRunner().invoke(cli, ["finetune", str(fifo), "--model", "tiny-random", "--n-epochs", "1"])
    assert r.exit_code == 0, r.output
    job = list_jobs()[0][0]
    assert files.content(job["training_file"]) == data
    # the same pipe as both files: read once, not found empty the second time
    threading.Thread(target=feed, daemon=True).start()
    r = CliRunner().invoke(cli, ["finetune", str(fifo), "--validation-file", str(fifo), "--model", "tiny-random",
                                 "--n-epochs", "1"])
    assert r.exit_code == 0, r.output
    job = list_jobs()[0][0]
    assert files.content(job["training_file"]) == files.content(job["validation_file"]) == data


def test_finetune_reads_a_dash_as_standard_input(tiny_model, chat_file, no_background_worker):
    """``cat train.jsonl | tunery finetune -``, as the data commands take it: it used to look for a
    file named ``-``. A real process, so that its standard input is the pipe."""
    import subprocess
    import sys

    from tunery.jobs import list_jobs

    data = chat_file(12).read_bytes()
    proc = subprocess.run([sys.executable, "-c", "from tunery.cli.main import main; main()", "finetune", "-",
                           "--model", "tiny-random", "--n-epochs", "1"], input=data, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    assert files.content(list_jobs()[0][0]["training_file"]) == data
