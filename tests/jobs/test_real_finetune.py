"""The real thing: `tunery finetune` on the bundled travel dataset with SmolLM2-135M-Instruct,
then the fine-tuned model answers through its chat template."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tunery.quickstart import TRAIN, VALID


@pytest.mark.slow
def test_cli_fine_tunes_the_default_model_on_the_bundled_data(smollm2):
    from tunery.chat import ChatMessage, Role
    from tunery.cli.main import cli
    from tunery.jobs import list_jobs, metrics
    from tunery.models import get
    from tunery.serving import GenerationParams
    from tunery.serving.resolve import get_chat_model

    r = CliRunner().invoke(cli, ["finetune", str(TRAIN), "--validation-file", str(VALID), "--suffix", "travel",
                                 "--n-epochs", "1", "--batch-size", "4", "--seed", "3", "--wait"])
    assert r.exit_code == 0, r.output
    job = list_jobs(limit=1)[0][0]
    assert job["status"] == "succeeded" and job["hyperparameters"]["n_epochs"] == 1
    curve = metrics(job["id"])
    n_train = len(TRAIN.read_text().splitlines())
    assert len(curve) == job["hyperparameters"]["n_epochs"] * -(-n_train // job["hyperparameters"]["batch_size"])
    losses = [m["train_loss"] for m in curve]
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10  # it learned
    assert "full_valid_loss" in curve[-1] and sum("valid_loss" in m for m in curve) >= 3
    rec = get(job["fine_tuned_model"])
    assert rec.is_adapter and rec.parent == "smollm2-135m-instruct"
    adapted = json.loads((rec.path / "adapter_config.json").read_text())["layers_to_transform"]
    assert adapted == list(range(20, 30))  # the catalog's default: the top ten layers

    system = '''You are an AI travel assistant that helps people plan their trips.'''
    model = get_chat_model(rec.id)
    answer = model.generate([ChatMessage(Role.SYSTEM, system), ChatMessage(Role.USER, "What should I see in Rome?")],
                            GenerationParams(temperature=0.0, max_tokens=60))
    assert answer.text.strip() and answer.usage.completion_tokens > 0
    assert "<|im_end|>" not in answer.text and "<|im_start|>" not in answer.text
