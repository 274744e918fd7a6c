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


def test_the_preference_job_starts_from_the_supervised_model_on_the_mix(tiny_model, tmp_path):
    """DPO for one epoch from the supervised fine-tune, on the recipe's mix, found again by its own
    fingerprint (another supervised model or seed is another key)."""
    import json

    from tunery.data import files
    from tunery.jobs import get_job, store
    from tunery.models import ModelRecord, register

    plan = Plan(model="tiny-random")
    sft = register(ModelRecord(id="ft:tiny-random:travel:1", kind="fine-tuned", path=tmp_path, source="test",
                               parent="tiny-random", method="lora")).id
    job = quickstart.create_preference_job(plan, sft)
    assert (job["model"], job["method"]["type"], job["user_provided_suffix"]) == (sft, "dpo", quickstart.DPO_SUFFIX)
    assert job["method"]["dpo"]["hyperparameters"]["n_epochs"] == quickstart.DPO_EPOCHS == 1
    mix = files.content(job["training_file"]).decode()
    assert mix == quickstart.preference_mix(quickstart.ONPOLICY.read_text(encoding="utf-8"))
    assert files.content(job["validation_file"]) == quickstart.PREFERENCES_VALID.read_bytes()
    onpolicy = quickstart.ONPOLICY.read_text(encoding="utf-8").splitlines()
    assert mix.splitlines()[: len(onpolicy)] == onpolicy and len(mix.splitlines()) == 283
    assert {json.loads(line)["input"]["messages"][0]["role"] for line in mix.splitlines()} == {"system"}

    key = plan.preference_fingerprint(sft)
    assert previous_job(plan, key) is None  # not succeeded yet
    store.set_status(job["id"], "succeeded", fine_tuned_model=sft)
    assert previous_job(plan, key)["id"] == job["id"] == get_job(job["id"])["id"]
    assert previous_job(plan) is None  # the supervised stage's key is another
    assert plan.preference_fingerprint("ft:tiny-random:travel:2") != key
    assert Plan(model="tiny-random", seed=7).preference_fingerprint(sft) != key


@pytest.mark.parametrize("which", ["TRAIN", "PREFERENCES"])
def test_a_bundled_file_that_does_not_validate_stops_before_any_job(tiny_model, tmp_path, monkeypatch, which):
    """An edited install's data is named invalid, its problems listed, and nothing is trained."""
    from click.testing import CliRunner

    from tunery.cli.main import cli
    from tunery.jobs import list_jobs

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n' * 12)
    monkeypatch.setattr(quickstart, which, bad)
    r = CliRunner().invoke(cli, ["quickstart", "--model", "tiny-random", "--no-serve"])
    assert r.exit_code == 1 and "bad.jsonl: invalid" in r.output and "line 1" in r.output, r.output
    assert "Fine-tune" not in r.output and list_jobs()[0] == []
