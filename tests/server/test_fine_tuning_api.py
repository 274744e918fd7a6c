"""``POST /v1/fine_tuning/jobs`` takes the typed job request: a misspelt or misplaced parameter is
a 400 OpenAI error object naming it, never a job that trains with defaults."""

from __future__ import annotations

import json

import pytest

JOBS = "/v1/fine_tuning/jobs"


@pytest.fixture
def training_file_id(http, chat_file) -> str:
    with chat_file(12).open("rb") as f:
        r = http.post("/v1/files", data={"purpose": "fine-tune"}, files={"file": ("train.jsonl", f)})
    assert r.status_code == 200, r.text
    return r.json()["id"]


@pytest.mark.parametrize(("extra", "param"), [
    ({"n_epochs": 2}, "n_epochs"),
    ({"hyperparameters": {"n_epoch": 2}}, "hyperparameters.n_epoch"),
    ({"method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epoch": 2}}}},
     "method.supervised.hyperparameters.n_epoch"),
    ({"lora": {"r": 4, "alhpa": 8}}, "lora.alhpa"),
])
def test_a_misspelt_parameter_is_a_400_naming_it(http, tiny_model, training_file_id, extra, param):
    r = http.post(JOBS, json={"model": "tiny-random", "training_file": training_file_id, **extra})
    assert r.status_code == 400, r.text
    assert r.json() == {"error": {"message": f"Unrecognized request argument supplied: {param.rsplit('.', 1)[-1]}",
                                  "type": "invalid_request_error", "param": param, "code": "unknown_parameter"}}
    assert http.get(JOBS).json()["data"] == []  # nothing was created


@pytest.mark.parametrize(("extra", "param"), [
    ({"lora": {"target_modules": "q_proj"}}, "lora.target_modules"),
    ({"lora": {"r": 2048}}, "lora.r"),
    ({"method": {"type": "reinforcement"}}, "method.type"),
    ({"hyperparameters": {"n_epochs": "many"}}, "hyperparameters.n_epochs"),
])
def test_a_bad_value_is_a_400_naming_it(http, tiny_model, training_file_id, extra, param):
    r = http.post(JOBS, json={"model": "tiny-random", "training_file": training_file_id, **extra})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["code"] == "invalid_value"
    assert err["message"].startswith(f"Invalid value for '{param}': ")


def test_the_studio_form_of_the_request_is_stored_as_given(http, tiny_model, training_file_id):
    """The studio's wizard puts training_method beside the method's hyperparameters."""
    body = {"model": "tiny-random", "training_file": training_file_id, "seed": 3, "suffix": "trip",
            "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 1},
                                                            "training_method": "full"}}}
    r = http.post(JOBS, content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["training_method"] == "full" and job["seed"] == 3 and job["user_provided_suffix"] == "trip"
    assert job["method"] == {"type": "supervised", "supervised": {"hyperparameters": {
        "n_epochs": 2, "batch_size": 1, "learning_rate_multiplier": "auto"}}}
    assert job["hyperparameters"] == job["method"]["supervised"]["hyperparameters"]


def test_unknown_target_modules_are_a_400_listing_the_model_s_layers(http, tiny_model, training_file_id):
    r = http.post(JOBS, json={"model": "tiny-random", "training_file": training_file_id,
                              "lora": {"target_modules": ["q_proj", "attn_proj"]}})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == "lora.target_modules" and "attn_proj" in err["message"] and "down_proj" in err["message"]
    assert http.get(JOBS).json()["data"] == []


def test_a_training_file_of_another_purpose_is_a_400_naming_it(http, tiny_model, chat_file):
    with chat_file(12).open("rb") as f:
        other = http.post("/v1/files", data={"purpose": "assistants"}, files={"file": ("notes.jsonl", f)}).json()
    r = http.post(JOBS, json={"model": "tiny-random", "training_file": other["id"]})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == "training_file" and other["id"] in err["message"] and "'assistants'" in err["message"]
    assert http.get(JOBS).json()["data"] == []


PAIR = {"input": {"messages": [{"role": "user", "content": "Hi"}]},
        "preferred_output": [{"role": "assistant", "content": "Hello!"}],
        "non_preferred_output": [{"role": "assistant", "content": "What?"}]}


@pytest.mark.parametrize("param", ["training_file", "validation_file"])
@pytest.mark.parametrize(("method", "fix"), [("supervised", '{"type": "dpo"}'), ("dpo", '{"type": "supervised"}')])
def test_a_file_the_method_cannot_train_on_is_a_400_naming_the_fix(http, tiny_model, training_file_id, param, method,
                                                                    fix):
    """Told from the file's first line when the job is created, not 30 lines of errors in the queue."""
    pairs = http.post("/v1/files", data={"purpose": "fine-tune"},
                      files={"file": ("pairs.jsonl", (json.dumps(PAIR) + "\n") * 12)}).json()["id"]
    good, bad = (training_file_id, pairs) if method == "supervised" else (pairs, training_file_id)
    r = http.post(JOBS, json={"model": "tiny-random", "method": {"type": method},
                              **{"training_file": good, param: bad}})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error", err
    assert "cannot train on" in err["message"] and fix in err["message"], err
    assert http.get(JOBS).json()["data"] == []


def test_an_unknown_after_cursor_is_a_400_not_the_first_page(http, tiny_model, training_file_id):
    job = http.post(JOBS, json={"model": "tiny-random", "training_file": training_file_id}).json()
    for path in (JOBS, f"{JOBS}/{job['id']}/events", f"{JOBS}/{job['id']}/checkpoints"):
        r = http.get(path, params={"after": "ftjob-nope"})
        assert r.status_code == 400, (path, r.text)
        assert r.json()["error"]["param"] == "after" and "ftjob-nope" in r.json()["error"]["message"]
    assert http.get(JOBS, params={"after": job["id"]}).json()["data"] == []


def test_a_fine_tuned_model_or_checkpoint_a_job_needs_is_not_deleted(http, tiny_model, training_file_id, tmp_path):
    from tunery.jobs import store
    from tunery.models import ModelRecord, find, register

    register(ModelRecord(id="ft:tiny-random::bbbb", kind="fine-tuned", path=tiny_model.path, source="test",
                         parent="tiny-random", method="full"))
    job = http.post(JOBS, json={"model": "ft:tiny-random::bbbb", "training_file": training_file_id}).json()
    r = http.delete("/v1/models/ft:tiny-random::bbbb")
    assert r.status_code == 409 and job["id"] in r.json()["error"]["message"], r.text

    checkpoint = f"{store.model_name('ft:tiny-random::bbbb', None, job['id'])}:ckpt-step-2"
    (tmp_path / "ckpt").mkdir()
    store.add_checkpoint(job["id"], 2, str(tmp_path / "ckpt"), checkpoint, {"step": 2})
    r = http.delete(f"/v1/models/{checkpoint}")
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == "model" and "checkpoint" in err["message"] and job["id"] in err["message"]
    listed = http.get(f"{JOBS}/{job['id']}/checkpoints").json()["data"]
    assert [c["fine_tuned_model_checkpoint"] for c in listed] == [checkpoint]
    assert find(checkpoint) is not None and (tmp_path / "ckpt").is_dir()

    assert http.post(f"{JOBS}/{job['id']}/cancel").status_code == 200
    assert http.delete(f"/v1/models/{checkpoint}").status_code == 400  # a checkpoint, whatever its job's state
    assert http.delete("/v1/models/ft:tiny-random::bbbb").json()["deleted"] is True


def test_the_sdk_pauses_and_resumes_a_job(client, tiny_model, training_file_id):
    import openai

    from tunery.jobs import store

    job = client.fine_tuning.jobs.create(model="tiny-random", training_file=training_file_id)
    with pytest.raises(openai.ConflictError) as e:  # still validating its files
        client.fine_tuning.jobs.pause(job.id)
    assert e.value.code == "job_not_pausable"
    assert store.set_status(job.id, "queued", only_from=("validating_files",))  # as its validation does
    assert client.fine_tuning.jobs.pause(job.id).status == "paused"
    assert client.fine_tuning.jobs.retrieve(job.id).status == "paused"
    assert client.fine_tuning.jobs.resume(job.id).status == "queued"
    with pytest.raises(openai.ConflictError) as e:
        client.fine_tuning.jobs.resume(job.id)
    assert e.value.code == "job_not_resumable" and "it is queued; only a paused job can be resumed" in e.value.message
    messages = [ev.message for ev in client.fine_tuning.jobs.list_events(job.id).data]
    assert messages[:2] == ["Fine-tuning job resumed", "Fine-tuning job paused while queued"]
    client.fine_tuning.jobs.cancel(job.id)
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.pause("ftjob-nope")


def test_the_sdk_lists_jobs_by_metadata(client, http, tiny_model, training_file_id):
    tagged = client.fine_tuning.jobs.create(model="tiny-random", training_file=training_file_id,
                                            metadata={"team": "search"})
    plain = client.fine_tuning.jobs.create(model="tiny-random", training_file=training_file_id)
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"team": "search"})] == [tagged.id]
    assert [j["id"] for j in http.get(JOBS, params={"metadata": "null"}).json()["data"]] == [plain.id]
    r = http.get(JOBS, params={"metadata": "team"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "metadata"


def test_integrations_null_or_empty_are_taken_and_any_other_refused(client, tiny_model, training_file_id):
    """SDKs and wrappers send `integrations=None` (or []) unasked: taken; a real integration is a 400
    naming it, not silently dropped."""
    import openai

    for value in (None, []):
        job = client.fine_tuning.jobs.create(model="tiny-random", training_file=training_file_id, integrations=value)
        assert job.integrations == [] or job.integrations is None
        client.fine_tuning.jobs.cancel(job.id)
    with pytest.raises(openai.BadRequestError, match="integrations") as e:
        client.fine_tuning.jobs.create(model="tiny-random", training_file=training_file_id,
                                       integrations=[{"type": "wandb", "wandb": {"project": "p"}}])
    assert e.value.body["param"] == "integrations"
