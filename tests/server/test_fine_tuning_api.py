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
