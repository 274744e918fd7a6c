"""What the command-line probe found in the jobs' request, validation and wording: LoRA settings
refused on a full fine-tune by the request itself, a refused setting named as the option that sets
it, the bad lines of a file listed up to one cap, and a job's status said in plain words."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tunery.cli.main import cli
from tunery.data import files
from tunery.data.validate import MAX_REPORTED_ERRORS
from tunery.errors import Conflict, InvalidInput
from tunery.jobs import cancel_job, create_job, pause_job, resume_job, store
from tunery.jobs.spec import FineTuneRequest

BASE = {"model": "tiny-random", "training_file": "file-1"}


@pytest.mark.parametrize("request_", [
    {**BASE, "training_method": "full", "lora": {"r": 4}},
    {**BASE, "method": {"type": "supervised", "supervised": {"training_method": "full", "lora": {"layers": "all"}}}},
])
def test_lora_settings_on_a_full_fine_tune_are_refused_not_ignored(request_):
    with pytest.raises(InvalidInput) as e:
        FineTuneRequest.parse(request_)
    assert e.value.param == "lora" and "do nothing in full fine-tuning" in e.value.message
    assert FineTuneRequest.parse({**BASE, "lora": {"r": 4}}).lora.r == 4  # with LoRA they apply
    assert FineTuneRequest.parse({**BASE, "training_method": "full"}).lora is None


def test_the_requests_lora_refusal_names_the_lora_options_given():
    """One check, the request's: the CLI names its error on ``lora`` as the --lora-* options typed."""
    from tunery.cli.jobs import _flag

    given = {"lora.layers", "lora.r"}
    assert _flag("lora", given) == _flag("method.supervised.lora", given) == "--lora-r, --lora-layers"
    assert _flag("lora.dropout", given) == "--lora-dropout"  # a field's own error names its option
    assert _flag("lora") is None


@pytest.mark.parametrize("args, flag, said", [
    (["--sharding", "fsdp"], "--sharding", "--training-method full"),
    (["--method", "dpo", "--nproc-per-node", "2"], "--nproc-per-node", "leave --nproc-per-node out"),
])
def test_a_setting_the_method_refuses_is_named_as_its_option(tmp_path, args, flag, said):
    r = CliRunner().invoke(cli, ["finetune", str(tmp_path / "train.jsonl"), *args])
    assert r.exit_code == 2 and f"Invalid value for {flag}" in r.output and said in r.output, r.output
    assert "training_method" not in r.output and "nproc_per_node" not in r.output, r.output


def test_the_cli_lists_the_bad_lines_up_to_the_workers_cap(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n" * (MAX_REPORTED_ERRORS + 5))
    r = CliRunner().invoke(cli, ["finetune", str(bad)])
    assert r.exit_code == 1, r.output
    assert r.output.count("not valid JSON") == MAX_REPORTED_ERRORS and "... and 5 more" in r.output, r.output


def test_a_job_that_cannot_be_paused_resumed_or_cancelled_says_why_in_plain_words(tiny_model, chat_file):
    job = create_job(model="tiny-random", training_file=files.create_from_path(chat_file(12)).id)
    store.update(job["id"], status="succeeded")
    with pytest.raises(Conflict, match="it has already succeeded; only a paused job can be resumed"):
        resume_job(job["id"])
    store.update(job["id"], status="cancelled")
    for act in (cancel_job, pause_job, resume_job):
        with pytest.raises(Conflict, match="it has already been cancelled"):
            act(job["id"])
    store.update(job["id"], status="running")
    with pytest.raises(Conflict, match="it is running; only a paused job can be resumed"):
        resume_job(job["id"])


def test_the_validation_failure_of_a_job_lists_the_bad_lines_up_to_the_same_cap(tiny_model, tmp_path):
    from tunery.jobs import Worker, get_job

    bad = tmp_path / "bad.jsonl"
    good = json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    bad.write_text(good + "\n" + "{not json\n" * (MAX_REPORTED_ERRORS + 5))
    job = create_job(model="tiny-random", training_file=files.create_from_path(bad).id)
    Worker().run_once()
    message = get_job(job["id"])["error"]["message"]
    assert message.count("not valid JSON") <= MAX_REPORTED_ERRORS and "more)" in message, message


def test_a_full_job_stored_with_lora_settings_before_they_were_refused_still_runs():
    """The refusal is for new requests: a job the previous release stored with LoRA settings on a
    full fine-tune (taken and ignored then) is read back without them, not failed on every claim."""
    from tunery.jobs import store

    req = store.request({"config": {"model": "tiny-random", "training_file": "file-x", "training_method": "full",
                                    "lora": {"r": 4}}})
    assert req.training_method == "full" and req.lora is None
