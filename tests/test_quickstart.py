"""The quickstart reuses the newest succeeded job of the same plan whose model still exists."""

from __future__ import annotations

import pytest

from tunery import quickstart
from tunery.quickstart import Plan, previous_job


def _succeeded_job(plan: Plan, *, model: str | None, fingerprint: str | None = None) -> str:
    from tunery.data import files
    from tunery.jobs import create_job, store

    job = create_job(model=plan.model, training_file=files.create_from_path(quickstart.TRAIN).id,
                     metadata={"quickstart": fingerprint or plan.fingerprint()})
    store.set_status(job["id"], "succeeded", fine_tuned_model=model)
    return job["id"]


def test_previous_job_is_the_newest_matching_one_whose_model_exists(tiny_model, tmp_path):
    from tunery.models import ModelRecord, register

    plan = Plan(model="tiny-random")
    assert previous_job(plan) is None
    register(ModelRecord(id="ft:tiny-random:travel:1", kind="fine-tuned", path=tmp_path, source="test",
                         parent="tiny-random", method="lora"))
    kept = _succeeded_job(plan, model="ft:tiny-random:travel:1")
    _succeeded_job(plan, model="ft:tiny-random:travel:gone")  # newer, but its model was removed
    _succeeded_job(plan, model="ft:tiny-random:travel:1", fingerprint="another plan")
    assert previous_job(plan)["id"] == kept
    assert previous_job(Plan(model="tiny-random", seed=7)) is None


def test_every_check_parses_and_names_its_subset():
    from tunery.evals import parse_evaluator

    for spec, label, reads in quickstart.CHECKS:
        ev = parse_evaluator(spec)
        assert reads in ("pass", "fail", "mean")
        # a check on one kind of question says which in its label
        if ev.where is not None:
            assert f"questions to {ev.where[1]}" in label, spec


@pytest.mark.parametrize(("args", "flag"), [(["--port", "70000"], "--port"), (["--port", "0"], "--port"),
                                            (["--seed", "-1"], "--seed")])
def test_options_are_checked_before_the_minutes_of_work(args, flag):
    """A port or seed no server or job takes was found only at the end (serving) or at the job."""
    from click.testing import CliRunner

    from tunery.cli.main import cli

    r = CliRunner().invoke(cli, ["quickstart", *args])
    assert r.exit_code == 2 and flag in r.output and "Base model" not in r.output, r.output


def test_a_port_in_use_is_named_before_the_minutes_of_work():
    import socket

    from click.testing import CliRunner

    from tunery.cli.main import cli
    from tunery.errors import InvalidInput

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = CliRunner().invoke(cli, ["quickstart", "--port", str(port)])
    assert isinstance(r.exception, InvalidInput) and r.exception.param == "port", r.output
    assert f"cannot listen on 127.0.0.1:{port}" in r.exception.message and "Base model" not in r.output
