"""Pausing and resuming a job, as OpenAI's ``pause`` and ``resume``: a running job writes a
checkpoint at the step it reached and stops, and once resumed goes on from exactly there."""

from __future__ import annotations

import time

import pytest

from tunery.data import files
from tunery.errors import Conflict, NotFound
from tunery.jobs import (
    Worker,
    cancel_job,
    create_job,
    get_job,
    list_checkpoints,
    list_events,
    metrics,
    pause_job,
    resume_job,
    store,
)


def _drive(worker: Worker, job_id: str, until, timeout: float = 240.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.run_once()
        job = get_job(job_id)
        if until(job):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never got there: {get_job(job_id)}")


def _job(chat_file, epochs: int) -> dict:
    train = files.create_from_path(chat_file(16))
    return create_job(model="tiny-random", training_file=train.id, seed=7,
                      hyperparameters={"n_epochs": epochs, "batch_size": 1})


def _messages(job_id: str) -> list[str]:
    return [e["message"] for e in reversed(list_events(job_id, limit=1000)[0])]


def _ended(job: dict) -> bool:
    return job["status"] in store.TERMINAL


def test_a_paused_job_keeps_the_step_it_reached_and_resumes_as_if_never_paused(tiny_model, chat_file, monkeypatch):
    monkeypatch.setenv("TUNERY_CHECKPOINT_EVERY", "100000")  # no checkpoint on the way but at epoch ends
    epochs = 4
    ref = _drive(Worker(), _job(chat_file, epochs)["id"], _ended)
    ref_curve = [(m["step"], m["train_loss"]) for m in metrics(ref["id"])]

    job = _job(chat_file, epochs)
    worker = Worker()
    _drive(worker, job["id"], lambda j: len(metrics(j["id"])) >= 3)
    assert pause_job(job["id"])["status"] == "pausing"
    paused = _drive(worker, job["id"], lambda j: j["status"] != "pausing")
    assert paused["status"] == "paused", paused
    assert worker.child is None and store.row(job["id"])["worker_id"] is None
    reached = len(metrics(job["id"]))
    assert 3 <= reached < len(ref_curve), "the pause came too late to test anything"
    assert list_checkpoints(job["id"])[0][0]["step_number"] == reached  # written at the pause, not an epoch end
    assert pause_job(job["id"])["status"] == "paused"  # again: nothing changes
    for _ in range(3):  # a paused job is not trained
        worker.run_once()
    assert get_job(job["id"])["status"] == "paused"

    assert resume_job(job["id"])["status"] == "queued"
    done = _drive(worker, job["id"], _ended)
    assert done["status"] == "succeeded", done["error"]
    assert [(m["step"], m["train_loss"]) for m in metrics(job["id"])] == ref_curve
    messages = _messages(job["id"])
    assert messages.count("Fine-tuning job started") == 1
    assert f"Fine-tuning job paused at step {reached}; resuming goes on from there" in messages
    assert f"Resumed from checkpoint at step {reached}" in messages
    assert messages.index("Fine-tuning job resumed") < messages.index(f"Resumed from checkpoint at step {reached}")
    assert store.row(job["id"])["attempts"] == 1  # the pause is not counted as a failed attempt


def test_a_queued_job_pauses_at_once_and_is_not_claimed(tiny_model, chat_file):
    job = _job(chat_file, 1)
    assert store.set_status(job["id"], "queued", only_from=("validating_files",))  # as its validation does
    assert pause_job(job["id"])["status"] == "paused"
    worker = Worker()
    worker.run_once()
    assert get_job(job["id"])["status"] == "paused"
    assert "Fine-tuning job paused while queued" in _messages(job["id"])
    assert cancel_job(job["id"])["status"] == "cancelled"  # a paused job can still be cancelled


def test_pause_and_resume_refuse_what_they_cannot_do(tiny_model, chat_file):
    job = _job(chat_file, 1)
    with pytest.raises(Conflict) as e:
        pause_job(job["id"])  # its files are being validated
    assert e.value.code == "job_not_pausable" and "validated" in str(e.value)
    with pytest.raises(Conflict) as e:
        resume_job(job["id"])
    assert e.value.code == "job_not_resumable" and "its files are being validated; only a paused job" in str(e.value)
    cancel_job(job["id"])
    with pytest.raises(Conflict, match="it has already been cancelled"):
        pause_job(job["id"])
    with pytest.raises(NotFound):
        pause_job("ftjob-nope")
    with pytest.raises(NotFound):
        resume_job("ftjob-nope")


def test_a_job_whose_worker_died_while_pausing_is_paused_not_queued(tiny_model, chat_file):
    job = _job(chat_file, 1)
    store.update(job["id"], status="pausing", worker_id="gone-worker", lease_expires_at=0, attempts=1)
    Worker().run_once()
    row = store.row(job["id"])
    assert (row["status"], row["worker_id"], row["attempts"]) == ("paused", None, 0)
    assert "Fine-tuning job paused; resuming starts it from the beginning" in _messages(job["id"])


def test_the_cli_pauses_and_resumes_and_follow_stops_at_a_pause(tiny_model, chat_file, monkeypatch):
    from click.testing import CliRunner

    from tunery.cli import jobs as jobs_cli
    from tunery.cli.main import cli

    job = _job(chat_file, 1)
    assert store.set_status(job["id"], "queued", only_from=("validating_files",))
    r = CliRunner().invoke(cli, ["jobs", "pause", job["id"]])
    assert r.exit_code == 0 and f"Job {job['id']}: paused" in r.output
    r = CliRunner().invoke(cli, ["jobs", "follow", job["id"], "--no-run-worker"])  # returns: it is paused
    assert r.exit_code == 0 and f"tunery jobs resume {job['id']}" in r.output
    monkeypatch.setattr(jobs_cli, "_ensure_background_worker", lambda: False)
    r = CliRunner().invoke(cli, ["jobs", "resume", job["id"]])
    assert r.exit_code == 0 and f"Job {job['id']}: queued" in r.output
    r = CliRunner().invoke(cli, ["jobs", "resume", job["id"]])
    assert isinstance(r.exception, Conflict) and "it is queued; only a paused job can be resumed" in r.exception.message


@pytest.mark.parametrize(("status", "code"), [("succeeded", 0), ("paused", 0), ("failed", 1), ("cancelled", 1)])
def test_follow_exits_0_on_a_pause_as_on_success_and_1_on_a_failure_or_cancel(tiny_model, chat_file, status, code):
    """A paused job is parked, not failed (OpenAI's pause and resume): following it ends well and
    says how to go on; a failed or cancelled one ends with exit 1."""
    from click.testing import CliRunner

    from tunery.cli.main import cli

    job = _job(chat_file, 1)
    store.update(job["id"], status=status)
    r = CliRunner().invoke(cli, ["jobs", "follow", job["id"], "--no-run-worker"])
    assert r.exit_code == code and f"Job {job['id']}: {status}" in r.output, r.output
    assert (f"go on with: tunery jobs resume {job['id']}" in r.output) == (status == "paused"), r.output


def test_quickstart_takes_no_model_from_a_paused_job(tiny_model, chat_file, monkeypatch):
    """`tunery quickstart` follows its job to a fine-tuned model: a paused one has none, so it stops
    there with exit 1 (the job's summary says how to resume), not with a model of None."""
    from tunery.cli.quickstart import _job as quickstart_job
    from tunery.jobs import worker

    job = _job(chat_file, 1)
    store.update(job["id"], status="paused")
    monkeypatch.setattr(worker, "worker_alive", lambda: True)  # no worker started here
    with pytest.raises(SystemExit) as e:
        quickstart_job(None, lambda: job)
    assert e.value.code == 1


def test_a_pause_after_the_last_step_lets_the_job_complete(tiny_model, chat_file, monkeypatch):
    """Once the last step is trained there is nothing left to save: a pause then (while the model
    is checked, copied or registered) must not throw the finished training away."""
    from tunery.jobs import runner

    job = _job(chat_file, 1)
    assert store.set_status(job["id"], "queued", only_from=("validating_files",))
    assert store.claim_next("here", 600)["id"] == job["id"]
    monkeypatch.delenv(runner.WORKER_ENV, raising=False)
    check = runner._check_serving_tokenizer

    def paused_meanwhile(rec):
        assert pause_job(job["id"])["status"] == "pausing"
        check(rec)

    monkeypatch.setattr(runner, "_check_serving_tokenizer", paused_meanwhile)
    assert runner.run(job["id"]) == 0
    done = get_job(job["id"])
    assert done["status"] == "succeeded" and done["fine_tuned_model"], done
    assert "Training had ended when the pause came: the job completes instead" in _messages(job["id"])


def test_a_crash_while_pausing_fails_the_job_with_its_error(tiny_model, chat_file):
    from tunery.jobs import runner

    job = _job(chat_file, 1)
    store.update(job["id"], status="pausing")
    runner.fail(job["id"], "No space left on device", code="training_error")
    row = store.row(job["id"])
    assert row["status"] == "failed" and row["error"]["message"] == "No space left on device"
