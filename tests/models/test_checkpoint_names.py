"""A fine-tuning job's checkpoint is a model name (``ft:...:ckpt-step-N``) the registry resolves,
through the ``model_checkpoints`` view of the schema rather than the jobs' tables."""

from __future__ import annotations

import pytest

from tunery.errors import NotFound
from tunery.models import find, get


def test_a_checkpoint_name_resolves_to_a_fine_tuned_model_on_its_base(tiny_model, chat_file, tmp_path):
    from tunery.data import files
    from tunery.jobs import create_job, store

    job = create_job(model="tiny-random", training_file=files.create_from_path(chat_file(12)).id,
                     suffix="ck", training_method="full")
    name = f"{store.model_name('tiny-random', 'ck', job['id'])}:ckpt-step-3"
    assert find(name) is None
    store.add_checkpoint(job["id"], 3, str(tmp_path / "step-3"), name, {"step": 3})

    rec = find(name)
    assert rec is not None and get(name) == rec
    assert (rec.kind, rec.parent, rec.method, rec.path) == ("fine-tuned", "tiny-random", "full", tmp_path / "step-3")
    assert rec.context_length == tiny_model.context_length  # from its base's record
    assert rec.meta["checkpoint_step"] == 3 and rec.meta["job"] == job["id"]
    with pytest.raises(NotFound, match="unknown model"):
        get(name.replace("step-3", "step-4"))
