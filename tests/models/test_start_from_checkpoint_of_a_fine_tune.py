"""A job whose ``model`` is a checkpoint of a job that started from a LoRA fine-tune: the checkpoint
holds only the adapter trained over that fine-tune merged in, so the new job starts from the two
stacked on the base (as the checkpoint is served), and registers one adapter on the base."""

from __future__ import annotations

import time

import pytest
import torch

from support_adapters import checkpoint_of_ft
from tunery.data import files
from tunery.errors import InvalidInput
from tunery.jobs import Worker, create_job, get_job, metrics, store


def _run(model: str, train_id: str) -> dict:
    job = create_job(model=model, training_file=train_id, seed=7,
                     hyperparameters={"n_epochs": 1, "batch_size": 4})
    worker, deadline = Worker(), time.monotonic() + 240
    while time.monotonic() < deadline:
        worker.run_once()
        job = get_job(job["id"])
        if job["status"] in store.TERMINAL:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job['id']} did not finish in time: {job}")


def test_a_job_from_the_checkpoint_starts_from_the_model_it_stands_for(tiny_model, chat_file, tmp_path):
    from tunery.models import ModelRecord, get, register
    from tunery.models.loading import load_model, load_tokenizer

    name, reference, source_job = checkpoint_of_ft(tiny_model, chat_file, tmp_path)
    train = files.create_from_path(chat_file(10)).id
    with pytest.raises(InvalidInput, match="has not ended") as e:  # its job may still delete it
        create_job(model=name, training_file=train)
    assert e.value.param == "model"
    store.set_status(source_job, "cancelled")

    # the same job from the model the checkpoint stands for, written out as plain weights
    merged = reference.merge_and_unload()
    merged.save_pretrained(tmp_path / "merged")
    load_tokenizer(tiny_model).save_pretrained(tmp_path / "merged")
    register(ModelRecord(id="merged-ref", kind="base", path=tmp_path / "merged", source="test",
                         meta={"catalog": "tiny-random"}))

    job, ref = _run(name, train), _run("merged-ref", train)
    assert job["status"] == "succeeded", job["error"]
    assert ref["status"] == "succeeded", ref["error"]
    losses, expect = ([m["train_loss"] for m in metrics(j["id"])] for j in (job, ref))
    assert len(losses) == len(expect) == 3
    assert losses[0] == pytest.approx(expect[0], rel=1e-5)  # the first step: the start's own loss
    assert losses == pytest.approx(expect, rel=1e-3)
    # registered as one adapter on the base, which runs as the reference job's model
    rec = get(job["fine_tuned_model"])
    assert rec.is_adapter and rec.parent == "tiny-random"
    ids = torch.tensor([[1, 5, 9, 13, 17, 21]])
    with torch.no_grad():
        got = load_model(rec)[0](input_ids=ids).logits
        want = load_model(ref["fine_tuned_model"])[0](input_ids=ids).logits
    assert torch.allclose(got, want, atol=1e-4)
