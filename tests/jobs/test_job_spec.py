"""The typed fine-tuning request: one place that knows every setting. Misspelt or misplaced
settings are errors naming their path (never a silent default), the method's forms agree, the
stored request reads back whole, and it resolves to the trainer's configuration in one place."""

from __future__ import annotations

import pytest

from tunery.data import files
from tunery.errors import InvalidInput
from tunery.jobs import FineTuneRequest, Worker, create_job, get_job, store
from tunery.models.catalog import CATALOG, TrainingDefaults

BASE = {"model": "tiny-random", "training_file": "file-x"}


def _error(**extra) -> InvalidInput:
    with pytest.raises(InvalidInput) as e:
        FineTuneRequest.parse({**BASE, **extra})
    return e.value


@pytest.mark.parametrize(("extra", "param"), [
    ({"n_epochs": 2}, "n_epochs"),
    ({"hyperparameters": {"n_epoch": 2}}, "hyperparameters.n_epoch"),
    ({"method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epoch": 2}}}},
     "method.supervised.hyperparameters.n_epoch"),
    ({"method": {"type": "supervised", "supervized": {}}}, "method.supervized"),
    ({"lora": {"rank": 8}}, "lora.rank"),
])
def test_an_unknown_key_anywhere_is_named_by_its_path(extra, param):
    e = _error(**extra)
    assert e.param == param and e.code == "unknown_parameter"
    assert e.message == f"Unrecognized request argument supplied: {param.rsplit('.', 1)[-1]}"


@pytest.mark.parametrize(("extra", "param", "words"), [
    ({"lora": {"target_modules": "q_proj"}}, "lora.target_modules", "list of module names"),
    ({"lora": {"target_modules": []}}, "lora.target_modules", "non-empty list"),
    ({"lora": {"r": 0}}, "lora.r", "greater than or equal to 1"),
    ({"lora": {"r": 4096}}, "lora.r", "less than or equal to 1024"),
    ({"lora": {"dropout": 1.0}}, "lora.dropout", "less than 1"),
    ({"lora": {"layers": [-1]}}, "lora.layers", "non-negative"),
    ({"hyperparameters": {"n_epochs": 51}}, "hyperparameters.n_epochs", "between 1 and 50"),
    ({"hyperparameters": {"learning_rate_multiplier": "fast"}}, "hyperparameters.learning_rate_multiplier",
     "'auto' or a number"),
    ({"method": {"type": "reinforcement"}}, "method.type", "'supervised' or 'dpo'"),
    ({"metadata": {"k": 1}}, "metadata.k", "valid string"),
    ({"metadata": {str(i): "v" for i in range(17)}}, "metadata", "at most 16"),
])
def test_bad_values_name_their_path_and_what_is_wanted(extra, param, words):
    e = _error(**extra)
    assert e.param == param and e.code == "invalid_value"
    assert words in e.message and e.message.startswith(f"Invalid value for '{param}': ")


def test_the_method_forms_agree_and_store_in_one_place():
    old = FineTuneRequest.parse({**BASE, "hyperparameters": {"n_epochs": 3}})
    new = FineTuneRequest.parse({**BASE, "method": {"type": "supervised",
                                                    "supervised": {"hyperparameters": {"n_epochs": 3}}}})
    no_type = FineTuneRequest.parse({**BASE, "method": {"supervised": {"hyperparameters": {"n_epochs": 3}}}})
    assert old.to_json() == new.to_json() == no_type.to_json()
    assert old.hyperparameters is None and old.method.hyperparameters.n_epochs == 3
    both = FineTuneRequest.parse({**BASE, "hyperparameters": {"batch_size": 2},
                                  "method": {"supervised": {"hyperparameters": {"n_epochs": 3}}}})
    assert (both.method.hyperparameters.n_epochs, both.method.hyperparameters.batch_size) == (3, 2)
    clash = _error(hyperparameters={"n_epochs": 2}, method={"supervised": {"hyperparameters": {"n_epochs": 3}}})
    assert clash.param == "hyperparameters" and "give it once" in clash.message


def test_tunery_settings_in_the_method_move_to_the_top():
    """The studio sends ``method.supervised.training_method``; it is stored at the top level."""
    r = FineTuneRequest.parse({**BASE, "method": {"type": "supervised", "supervised": {
        "training_method": "full", "nproc_per_node": 2, "hyperparameters": {"n_epochs": 1}}}})
    assert r.training_method == "full" and r.nproc_per_node == 2
    assert FineTuneRequest.parse({**BASE, "method": {"supervised": {"lora": {"r": 4}}}}).lora.r == 4
    assert r.to_json()["method"] == {"type": "supervised", "supervised": {"hyperparameters": {
        "n_epochs": 1, "batch_size": "auto", "learning_rate_multiplier": "auto"}}}
    e = _error(training_method="lora", method={"supervised": {"training_method": "full"}})
    assert "given twice" in e.message


def test_training_config_resolves_auto_with_the_catalog_defaults(monkeypatch):
    monkeypatch.delenv("TUNERY_CHECKPOINT_EVERY", raising=False)
    d = CATALOG["smollm2-135m-instruct"].training
    r = FineTuneRequest.parse({**BASE, "seed": 7, "hyperparameters": {"learning_rate_multiplier": 0.5},
                               "lora": {"r": 4, "layers": "all"}})
    cfg, hp = r.training_config(82, d)
    assert (hp.n_epochs, hp.batch_size, hp.learning_rate_multiplier) == (3, 8, 0.5)
    assert (cfg.n_epochs, cfg.batch_size, cfg.seed, cfg.method) == (3, 8, 7, "lora")
    assert cfg.learning_rate == d.lora_learning_rate * 0.5
    assert cfg.lora.r == 4 and cfg.lora.alpha == d.lora_alpha and cfg.lora.layers is None  # "all"
    assert cfg.checkpoint_every == 5 and cfg.eval_every == 3  # 33 steps
    default = FineTuneRequest.parse({**BASE, "seed": 7}).training_config(82, d)[0]
    assert default.lora.layers == d.lora_layers and default.lora.target_modules == d.lora_target_modules
    tools = FineTuneRequest.parse({**BASE, "seed": 7}).training_config(82, d, tools=True)[0]
    assert tools.lora.layers is None  # every layer: the examples define tools
    full = FineTuneRequest.parse({**BASE, "seed": 7, "training_method": "full"}).training_config(82, TrainingDefaults())
    assert full[0].learning_rate == TrainingDefaults().full_learning_rate


def test_the_stored_request_reads_back_whole(tiny_model, chat_file):
    train = files.create_from_path(chat_file(12))
    job = create_job(model="tiny-random", training_file=train.id, suffix="x",
                     method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
                     lora={"r": 4, "target_modules": ["q_proj"]}, metadata={"team": "a"})
    back = store.request(store.row(job["id"]))
    assert back.seed == job["seed"] and back.lora.target_modules == ["q_proj"] and back.metadata == {"team": "a"}
    assert back.method.hyperparameters.n_epochs == 2 and back.suffix == "x"
    assert create_job(back.model_copy(update={"seed": None}))["seed"] is not None  # a request object is taken too


def test_a_job_stored_before_requests_were_kept_whole_still_reads(tiny_model, chat_file):
    from tunery import db

    job = create_job(model="tiny-random", training_file=files.create_from_path(chat_file(12)).id, seed=3,
                     hyperparameters={"n_epochs": 2}, lora={"layers": [1]})
    db.execute("UPDATE jobs SET config=? WHERE id=?", (db.dumps({"lora": {"layers": [1]}}), job["id"]))
    back = store.request(store.row(job["id"]))
    assert back.seed == 3 and back.lora.layers == [1] and back.method.hyperparameters.n_epochs == 2


def test_a_batch_larger_than_the_training_file_fails_the_job_in_validation(tiny_model, chat_file):
    train = files.create_from_path(chat_file(12))
    job = create_job(model="tiny-random", training_file=train.id, hyperparameters={"batch_size": 32})
    Worker().run_once()
    job = get_job(job["id"])
    assert job["status"] == "failed" and job["error"]["param"] == "hyperparameters.batch_size"
    assert "batch_size 32 is larger than the 12 training examples" in job["error"]["message"]
    assert "at most 12" in job["error"]["message"]
