"""The job system with the tiny model: the happy path, bad input, cancel, and resume after a kill."""

from __future__ import annotations

import json
import os
import random
import signal
import time

import pytest

from support_workers import run_here
from tunery.data import files
from tunery.errors import InvalidInput
from tunery.home import home
from tunery.jobs import Worker, cancel_job, create_job, get_job, list_checkpoints, list_events, metrics, store


def _drive(worker: Worker, job_id: str, *, until=None, timeout: float = 240.0) -> dict:
    """Run worker rounds until the job ends (or ``until(job)`` holds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.run_once()
        job = get_job(job_id)
        if (until and until(job)) or job["status"] in store.TERMINAL:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in time: {get_job(job_id)}")


def _job(chat_file, n=12, **kw) -> dict:
    train = files.create_from_path(chat_file(n))
    kw.setdefault("hyperparameters", {"n_epochs": 2, "batch_size": 2})
    return create_job(model="tiny-random", training_file=train.id, seed=kw.pop("seed", 5), **kw)


def test_job_succeeds_and_registers_model(tiny_model, chat_file):
    valid = files.create_from_path(chat_file(4, name="valid.jsonl"))
    job = _job(chat_file, validation_file=valid.id, suffix="travel")
    assert job["status"] == "validating_files" and job["object"] == "fine_tuning.job"
    job = _drive(Worker(), job["id"])
    assert job["status"] == "succeeded", job["error"]
    assert job["fine_tuned_model"] == f"ft:tiny-random:travel:{job['id'][-8:]}"
    assert job["hyperparameters"] == {"n_epochs": 2, "batch_size": 2, "learning_rate_multiplier": 1.0}
    assert job["trained_tokens"] > 0 and job["finished_at"] >= job["created_at"]
    csv = files.content(job["result_files"][0]).decode()
    assert csv.startswith("step,train_loss,train_mean_token_accuracy,valid_loss")
    steps = [m["step"] for m in metrics(job["id"])]
    assert steps == list(range(1, 13))
    events, _ = list_events(job["id"], limit=100)
    messages = [e["message"] for e in events]
    assert "The job has successfully completed" in messages
    assert any(e["type"] == "metrics" and "full_valid_loss" in e["data"] for e in events)
    cps, _ = list_checkpoints(job["id"])
    assert 1 <= len(cps) <= 3 and cps[0]["step_number"] == 12
    assert all(c["metrics"]["step"] == c["step_number"] for c in cps)  # OpenAI's metrics name their step
    from tunery.models import get
    from tunery.models.loading import load_model

    rec = get(job["fine_tuned_model"])
    assert rec.is_adapter and rec.parent == "tiny-random"
    ckpt = get(cps[-1]["fine_tuned_model_checkpoint"])  # checkpoints resolve as models too
    model, tok, _ = load_model(ckpt)
    assert model is not None and tok.chat_template
    # the job checked the new model's tokenizer for serving: its first cold ask is not slowed by it
    from tunery.home import home
    from tunery.models.loading import LIGHT_TOKENIZERS, _light_key, tokenizer_key

    memo = json.loads((home().cache / LIGHT_TOKENIZERS).read_text())
    assert memo[_light_key(tokenizer_key(rec))].isalnum()


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"model": "no-such-model"}, "model"),
    ({"training_file": "file-missing"}, "training_file"),
    ({"validation_file": "file-missing"}, "validation_file"),
    ({"hyperparameters": {"n_epochs": -2}}, "hyperparameters.n_epochs"),
    ({"hyperparameters": {"batch_size": "big"}}, "hyperparameters.batch_size"),
    ({"method": {"type": "reinforcement"}}, "method.type"),
    ({"suffix": "Has Spaces!"}, "suffix"),
    ({"suffix": "x" * 65}, "suffix"),
    ({"seed": -1}, "seed"),
    ({"training_method": "qlora"}, "training_method"),
    ({"lora": {"layers": [0, 9]}}, "lora.layers"),  # the tiny model has 2 layers
    ({"lora": {"layers": "top"}}, "lora.layers"),
    ({"lora": {"layers": "1"}}, "lora.layers"),  # a string is not a list of indices
    ({"lora": {"layers": [0.5]}}, "lora.layers"),
    ({"lora": {"r": "big"}}, "lora.r"),  # named to the field since the typed spec (was "lora")
    ({"lora": {"rank": 4}}, "lora.rank"),
    ({"method": {"type": "supervised", "supervised": {"lora": [1]}}}, "lora"),
])
def test_bad_input_is_rejected_at_creation(tiny_model, chat_file, kwargs, param):
    train = files.create_from_path(chat_file(12))
    args = {"model": "tiny-random", "training_file": train.id, **kwargs}
    with pytest.raises(InvalidInput) as e:
        create_job(**args)
    assert e.value.param == param


def test_unknown_lora_target_modules_are_named_at_creation_with_the_valid_ones(tiny_model, chat_file):
    train = files.create_from_path(chat_file(12))
    with pytest.raises(InvalidInput) as e:
        create_job(model="tiny-random", training_file=train.id, lora={"target_modules": ["q_proj", "qq_proj", "mlp"]})
    assert e.value.param == "lora.target_modules"
    message = str(e.value)
    assert "['qq_proj', 'mlp']" in message and "q_proj, up_proj, v_proj" in message  # the unknown, then the valid
    assert list_jobs_ids() == []
    # names as PEFT matches them: the last part, or a dotted tail of a linear layer's name
    assert create_job(model="tiny-random", training_file=train.id,
                      lora={"target_modules": ["q_proj", "self_attn.v_proj"]})["status"] == "validating_files"


def list_jobs_ids() -> list[str]:
    from tunery.jobs import list_jobs

    return [j["id"] for j in list_jobs(limit=100)[0]]


@pytest.mark.parametrize("param", ["training_file", "validation_file"])
def test_a_file_of_another_purpose_is_refused_at_creation(tiny_model, chat_file, param):
    ok = files.create_from_path(chat_file(12))
    other = files.create_from_path(chat_file(12, name="other.jsonl"), purpose="assistants")
    with pytest.raises(InvalidInput) as e:
        create_job(model="tiny-random", **{"training_file": ok.id, param: other.id})
    assert e.value.param == param
    assert other.id in str(e.value) and "other.jsonl" in str(e.value) and "'assistants'" in str(e.value)
    assert list_jobs_ids() == []


PAIR = {"input": {"messages": [{"role": "user", "content": "Where should I stay?"}]},
        "preferred_output": [{"role": "assistant", "content": "The old town. When do you go?"}],
        "non_preferred_output": [{"role": "assistant", "content": "Book the Grand Hotel."}]}


@pytest.mark.parametrize("param", ["training_file", "validation_file"])
@pytest.mark.parametrize(("method", "data", "fix"), [
    ("supervised", "pairs", '{"type": "dpo"}'),
    ("dpo", "chat", '{"type": "supervised"}'),
])
def test_a_file_the_method_cannot_train_on_is_refused_at_creation(tiny_model, chat_file, tmp_path, param, method,
                                                                   data, fix):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(PAIR) + "\n" for _ in range(12)))
    chat = chat_file(12)
    good, bad = (chat, pairs) if data == "pairs" else (pairs, chat)
    ids = {"training_file": files.create_from_path(good).id, param: files.create_from_path(bad).id}
    with pytest.raises(InvalidInput) as e:
        create_job(model="tiny-random", method={"type": method}, **ids)
    assert e.value.param == param
    assert f"the {param.removesuffix('_file')} file holds {'preference pairs' if data == 'pairs' else 'chat examples'}" \
        in str(e.value)
    assert fix in e.value.hint
    assert list_jobs_ids() == []
    # the right method takes the same files
    other = "dpo" if method == "supervised" else "supervised"
    if param == "training_file":
        assert create_job(model="tiny-random", method={"type": other}, **ids)["status"] == "validating_files"


def test_a_file_a_job_reads_is_kept_until_the_job_ends(tiny_model, chat_file):
    from tunery.errors import Conflict

    train = files.create_from_path(chat_file(12))
    valid = files.create_from_path(chat_file(4, name="valid.jsonl"))
    job = create_job(model="tiny-random", training_file=train.id, validation_file=valid.id)
    for status in ("validating_files", "queued", "running"):  # queued again too: a job waiting to resume
        store.update(job["id"], status=status)
        for f, role in ((train, "training_file"), (valid, "validation_file")):
            with pytest.raises(Conflict) as e:
                files.delete(f.id)
            assert e.value.param == "file_id" and job["id"] in str(e.value) and role in str(e.value)
            assert files.get(f.id).path.exists()
    cancel_job(job["id"])
    files.delete(train.id)
    files.delete(valid.id)
    for status in ("succeeded", "failed"):  # every ended job lets its file go
        ended = _job(chat_file)
        store.update(ended["id"], status=status)
        files.delete(ended["training_file"])
    assert [f.id for f in files.list_files()] == []


def test_a_model_an_unfinished_job_starts_from_is_kept_until_the_job_ends(tiny_model, chat_file, tmp_path):
    from tunery.errors import Conflict
    from tunery.models import ModelRecord, find, register, remove

    register(ModelRecord(id="ft:tiny-random::aaaa", kind="fine-tuned", path=tiny_model.path, source="test",
                         parent="tiny-random", method="full"))
    job = create_job(model="ft:tiny-random::aaaa", training_file=files.create_from_path(chat_file(12)).id)
    with pytest.raises(Conflict) as e:
        remove("ft:tiny-random::aaaa", delete_files=False)
    assert e.value.param == "model" and job["id"] in str(e.value)
    cancel_job(job["id"])
    remove("ft:tiny-random::aaaa", delete_files=False)
    assert find("ft:tiny-random::aaaa") is None


def test_a_checkpoint_is_never_removed_as_a_model(tiny_model, chat_file, tmp_path):
    from tunery.models import find, remove

    job = _job(chat_file, suffix="ck")
    name = f"{store.model_name('tiny-random', 'ck', job['id'])}:ckpt-step-3"
    (tmp_path / "step-3").mkdir()
    store.add_checkpoint(job["id"], 3, str(tmp_path / "step-3"), name, {"step": 3})
    with pytest.raises(InvalidInput) as e:
        remove(name)
    assert e.value.param == "model" and "checkpoint" in str(e.value) and job["id"] in str(e.value)
    assert find(name) is not None and (tmp_path / "step-3").is_dir()
    assert [c["fine_tuned_model_checkpoint"] for c in list_checkpoints(job["id"])[0]] == [name]


def test_an_unknown_after_cursor_is_refused_not_read_as_the_first_page(tiny_model, chat_file):
    from tunery.jobs import list_jobs

    job = _job(chat_file)
    for listing in (lambda after: list_jobs(after=after), lambda after: list_events(job["id"], after=after),
                    lambda after: list_checkpoints(job["id"], after=after)):
        with pytest.raises(InvalidInput) as e:
            listing("ftjob-nope")
        assert e.value.param == "after" and "'ftjob-nope'" in str(e.value)
    assert list_jobs(after=job["id"])[0] == []  # a known cursor still pages


def test_invalid_training_file_fails_in_validation_with_line_numbers(tiny_model, tmp_path):
    bad = tmp_path / "bad.jsonl"
    lines = [json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})] * 11
    lines.insert(3, "{not json")
    bad.write_text("\n".join(lines) + "\n")
    job = create_job(model="tiny-random", training_file=files.create_from_path(bad).id)
    job = _drive(Worker(), job["id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == "invalid_training_file" and job["error"]["param"] == "training_file"
    assert "line 4" in job["error"]["message"]


def test_a_control_token_in_a_message_fails_the_job_in_validation(tiny_model, tmp_path):
    """The worker validates with the model's tokenizer: a message that writes `<|im_end|>` would be
    trained on as the token itself, a turn's end."""
    bad = tmp_path / "bad.jsonl"
    lines = [json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})] * 11
    lines.insert(5, json.dumps({"messages": [{"role": "user", "content": "q"},
                                             {"role": "assistant", "content": "a<|im_end|>"}]}))
    bad.write_text("\n".join(lines) + "\n")
    job = _drive(Worker(), create_job(model="tiny-random", training_file=files.create_from_path(bad).id)["id"])
    assert job["status"] == "failed" and job["error"]["code"] == "invalid_training_file", job
    assert "line 6, messages[1].content" in job["error"]["message"] and "control token" in job["error"]["message"]


def test_cancel_stops_training_promptly(tiny_model, chat_file):
    job = _job(chat_file, n=16, hyperparameters={"n_epochs": 25, "batch_size": 1})
    w = Worker()
    job = _drive(w, job["id"], until=lambda j: len(metrics(j["id"])) >= 2)
    pid = store.row(job["id"])["pid"]
    cancel_job(job["id"])
    t0 = time.monotonic()
    w.run_once()
    assert w.child is None or w.child.proc.poll() is not None
    assert time.monotonic() - t0 < 15
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    job = get_job(job["id"])
    assert job["status"] == "cancelled" and job["fine_tuned_model"] is None
    with pytest.raises(Exception, match="already been cancelled"):
        cancel_job(job["id"])


def test_resume_after_sigkill_has_no_gap(tiny_model, chat_file, monkeypatch):
    """Kill the training process at a random step, start a new worker: the job succeeds, and its
    loss curve is the uninterrupted run's, step for step."""
    monkeypatch.setenv("TUNERY_CHECKPOINT_EVERY", "3")
    ref = _drive(Worker(), _job(chat_file, seed=11)["id"])
    ref_curve = [(m["step"], m["train_loss"]) for m in metrics(ref["id"])]

    job = _job(chat_file, seed=11)
    kill_at = random.Random().randint(4, 10)
    first = Worker()
    _drive(first, job["id"], until=lambda j: len(metrics(j["id"])) >= kill_at)
    os.kill(store.row(job["id"])["pid"], signal.SIGKILL)
    first.child.proc.wait()  # the first worker "dies" with its child: it never runs again
    job = _drive(Worker(), job["id"])
    assert job["status"] == "succeeded", job["error"]
    curve = [(m["step"], m["train_loss"]) for m in metrics(job["id"])]
    assert [s for s, _ in curve] == list(range(1, len(ref_curve) + 1))
    assert curve == ref_curve
    messages = [e["message"] for e in list_events(job["id"], limit=500)[0]]
    assert any("resuming from the last checkpoint" in m for m in messages)
    assert any(m.startswith("Resumed from checkpoint at step") for m in messages)


def test_cli_lora_layers_reach_the_job_and_bad_ones_are_named(tiny_model, chat_file):
    from click.testing import CliRunner

    from tunery.cli.main import cli
    from tunery.jobs import list_jobs

    path = str(chat_file(12))
    r = CliRunner().invoke(cli, ["finetune", path, "--model", "tiny-random", "--lora-layers", "1"])
    assert r.exit_code == 0, r.output
    job = list_jobs(limit=1)[0][0]
    from tunery import db

    row = db.query("SELECT config FROM jobs WHERE id=?", (job["id"],))[0]
    assert db.loads(row["config"])["lora"]["layers"] == [1]
    r = CliRunner().invoke(cli, ["finetune", path, "--model", "tiny-random", "--lora-layers", "0-5"])
    # a domain error: the CLI's entry point prints it as one line and exits 1
    assert isinstance(r.exception, InvalidInput) and "between 0 and 1" in str(r.exception)
    assert r.exception.param == "lora.layers"
    r = CliRunner().invoke(cli, ["finetune", path, "--model", "tiny-random", "--lora-layers", "top"])
    assert r.exit_code == 2 and "--lora-layers" in r.output


def test_cli_a_refused_job_leaves_no_copy_of_its_files(tiny_model, chat_file):
    """The files are stored before the job is created: a refused job deletes them again (each
    refusal used to leave a copy of the training data in TUNERY_HOME/files)."""
    from click.testing import CliRunner

    from tunery.cli.main import cli

    path = str(chat_file(12))
    for args in (["--model", "nope"], ["--model", "ft:tiny-random:x:nope"], ["--model", "tiny-random",
                 "--lora-layers", "7"], ["--model", "tiny-random", "--lora-target-modules", "nope"]):
        r = CliRunner().invoke(cli, ["finetune", path, "--validation-file", path, *args])
        assert isinstance(r.exception, InvalidInput), r.output
    assert "unknown model 'nope'" in CliRunner().invoke(cli, ["finetune", path, "--model", "nope"]).exception.message
    assert files.list_files() == [] and not any(home().files.iterdir())
    r = CliRunner().invoke(cli, ["finetune", path, "--model", "tiny-random", "--lora-layers", "1-0"])
    assert r.exit_code == 2 and "'1-0': a range goes from the lower index to the higher, e.g. 0-1" in r.output


def test_cli_ctrl_c_while_training_here_says_the_job_waits_in_the_queue(tiny_model, chat_file, monkeypatch):
    """With --wait the job trains in this process, so Ctrl-C stops it too: the message must not say
    it goes on."""
    from click.testing import CliRunner

    from tunery.cli import jobs as jobs_cli
    from tunery.cli.main import cli

    def interrupt(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(jobs_cli.time, "sleep", interrupt)
    monkeypatch.setattr(Worker, "start", lambda self: self)  # no training thread: the job stays queued
    r = CliRunner().invoke(cli, ["finetune", str(chat_file(12)), "--model", "tiny-random", "--wait"])
    assert r.exit_code == 130
    assert "stopped training here; the job waits in the queue" in r.output and "goes on" not in r.output


@pytest.mark.parametrize("interval", ["0", "-1"])
def test_worker_poll_interval_must_be_positive(interval):
    """A negative interval made the worker look for jobs in a busy loop."""
    from click.testing import CliRunner

    from tunery.cli.main import cli

    r = CliRunner().invoke(cli, ["worker", "--exit-when-idle", "--poll-interval", interval])
    assert r.exit_code == 2 and "--poll-interval" in r.output and "worker started" not in r.output


def test_follow_an_unknown_job_draws_no_progress_bar():
    from click.testing import CliRunner

    from tunery.cli.main import cli
    from tunery.errors import NotFound

    r = CliRunner().invoke(cli, ["jobs", "follow", "nope"])
    assert isinstance(r.exception, NotFound) and "nope" in str(r.exception)
    assert "steps" not in r.output  # no bar drawn before the error


def test_cli_builds_the_same_request_and_names_the_flag_of_a_bad_value(tiny_model, chat_file):
    from click.testing import CliRunner

    from tunery import db
    from tunery.cli.main import cli
    from tunery.jobs import list_jobs

    path = str(chat_file(12))
    ok = ["finetune", path, "--model", "tiny-random", "--n-epochs", "2", "--lora-target-modules", "q_proj,v_proj",
          "--lora-dropout", "0.1", "--seed", "4"]
    r = CliRunner().invoke(cli, ok)
    assert r.exit_code == 0, r.output
    job = list_jobs(limit=1)[0][0]
    assert job["hyperparameters"]["n_epochs"] == 2 and job["seed"] == 4
    stored = db.loads(db.query("SELECT config FROM jobs WHERE id=?", (job["id"],))[0]["config"])
    assert stored["lora"] == {"dropout": 0.1, "target_modules": ["q_proj", "v_proj"]}
    for args, flag, words in [
        (["--n-epoch", "2"], "--n-epoch", "No such option"),  # misspelt: click names it and the fix
        (["--n-epochs", "many"], "--n-epochs", "'auto' or an integer"),
        (["--lora-r", "0"], "--lora-r", "greater than or equal to 1"),
        (["--lora-dropout", "1.5"], "--lora-dropout", "less than 1"),
        (["--suffix", "Bad Name"], "--suffix", "lowercase letters"),
        (["--batch-size", "32"], "--batch-size", "larger than the 12 training examples"),
    ]:
        r = CliRunner().invoke(cli, ["finetune", path, "--model", "tiny-random", *args])
        assert r.exit_code == 2 and r.exception is not None and not isinstance(r.exception, InvalidInput), r.output
        assert flag in r.output and words in r.output, r.output
    assert len(list_jobs(limit=10)[0]) == 1  # no job for any of them


def test_a_fine_tune_outside_the_default_layers_gets_its_copy_when_the_job_ends(tiny_model, chat_file, monkeypatch,
                                                                                tmp_path):
    """When the base is served fast (its default copy, adapter inputs on layer 1, exists), a job that
    trains LoRA on every layer builds the all-layer copy before it succeeds, so the new fine-tune's
    first request does not wait for it. A job on the default layers builds nothing, nor does any job
    while the base has no copy; a build that fails or is stopped leaves the job to succeed."""
    import dataclasses

    from tunery.compiled import cache
    from tunery.models.catalog import CATALOG

    monkeypatch.setenv("TUNERY_COMPILED_DIR", str(tmp_path / "compiled"))
    spec = CATALOG["tiny-random"]
    monkeypatch.setitem(CATALOG, "tiny-random", dataclasses.replace(
        spec, training=dataclasses.replace(spec.training, lora_layers=(1,))))
    train = files.create_from_path(chat_file(10))

    def job(layers) -> list[str]:
        job_id = create_job(model="tiny-random", training_file=train.id, seed=3, lora={"layers": layers},
                            hyperparameters={"n_epochs": 1, "batch_size": 2})["id"]
        assert store.set_status(job_id, "running")
        run_here(job_id)
        assert get_job(job_id)["status"] == "succeeded"
        return [e["message"] for e in store.events(job_id, limit=100)[0]]

    job("all")  # the base is not served fast yet: no copy of either kind
    assert not (tmp_path / "compiled").exists() or not list((tmp_path / "compiled").iterdir())
    cache.ensure(tiny_model.path, "int8", layers=(1,))
    with monkeypatch.context() as m:  # the build fails: the job still succeeds, and says so
        m.setattr(cache, "build_in_child", lambda *a, **kw: False)
        said = job("all")
        assert any("Could not build it" in s for s in said) and cache.find(tiny_model.path, "int8") is None
    said = job([1])
    assert not any("every layer" in s for s in said) and cache.find(tiny_model.path, "int8") is None
    said = job("all")
    assert any("adapter inputs on every layer" in s for s in said) and any(s.startswith("Built it in") for s in said)
    assert cache.find(tiny_model.path, "int8") is not None


def test_a_build_in_a_child_is_killed_when_told_to_stop(tiny_model, monkeypatch, tmp_path):
    from tunery.compiled import cache

    monkeypatch.setenv("TUNERY_COMPILED_DIR", str(tmp_path / "compiled"))
    asked: list[float] = []
    assert not cache.build_in_child(tiny_model.path, "int8", name="tiny", poll_s=0.05,
                                    stop=lambda: asked.append(1) or len(asked) > 2)
    assert cache.find(tiny_model.path, "int8") is None
    assert cache.build_in_child(tiny_model.path, "int8", name="tiny")  # the lock died with the child
    assert cache.find(tiny_model.path, "int8") is not None


def test_tool_data_trains_every_layer_unless_the_request_chooses(tiny_model, tmp_path, monkeypatch):
    """A training file whose examples define tools gets LoRA on the catalog's ``tool_lora_layers``
    (every layer), and the start event says why; chosen layers stay as chosen."""
    import dataclasses

    from tunery.models import registry
    from tunery.models.catalog import CATALOG

    spec = CATALOG["tiny-random"]
    monkeypatch.setitem(CATALOG, "tiny-random", dataclasses.replace(
        spec, training=dataclasses.replace(spec.training, lora_layers=(1,))))
    tool = {"type": "function", "function": {"name": "get_time", "description": "Local time in a city",
                                             "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                            "required": ["city"]}}}
    rows = [{"tools": [tool], "messages": [
        {"role": "user", "content": f"What time is it in city {i}?"},
        {"role": "assistant", "tool_calls": [{"id": f"call_{i}", "type": "function", "function": {
            "name": "get_time", "arguments": json.dumps({"city": f"city {i}"})}}]},
        {"role": "tool", "tool_call_id": f"call_{i}", "content": "09:00"},
        {"role": "assistant", "content": f"It is nine in city {i}."}]} for i in range(10)]
    path = tmp_path / "tools.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    train = files.create_from_path(path)

    def job(**kw) -> tuple[list[int], str]:
        job_id = create_job(model="tiny-random", training_file=train.id, seed=3,
                            hyperparameters={"n_epochs": 1, "batch_size": 2}, **kw)["id"]
        assert store.set_status(job_id, "running")
        run_here(job_id)
        job = get_job(job_id)
        started = next(e["message"] for e in store.events(job_id, limit=100)[0]
                       if e["message"].startswith("Fine-tuning started"))
        rec = registry.get(job["fine_tuned_model"])
        return json.loads((rec.path / "adapter_config.json").read_text()).get("layers_to_transform"), started

    layers, said = job()
    assert layers in (None, [0, 1]) and "LoRA on every layer, as the training examples define tools" in said
    assert ", 1 epoch, batch size 2," in said
    layers, said = job(lora={"layers": [1]})
    assert layers == [1] and "define tools" not in said
