"""The recipe: conversations in, a fine-tuned model out, the same run as the trainer's own, with
its start, its warnings and its resume reported through the callbacks."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from support_chat import chat_lines
from tunery.chat import Conversation
from tunery.models.loading import load_tokenizer
from tunery.training import Callbacks, Cancelled, Trainer, TrainingConfig, encode_all, finetune
from tunery.training.config import LoraSettings

CONFIG = TrainingConfig(method="lora", n_epochs=2, batch_size=3, learning_rate=2e-2, seed=5, max_seq_length=256,
                        lora=LoraSettings(r=4, alpha=8, layers=(1,)), checkpoint_every=2, eval_every=2)


def _conversations(n=9):
    return [Conversation.from_dicts(r["messages"]) for r in chat_lines(n)]


def _recorder():
    seen: dict[str, list] = {"start": [], "messages": [], "steps": []}
    cb = Callbacks(on_start=seen["start"].append, on_message=lambda level, m: seen["messages"].append((level, m)),
                   on_metrics=lambda row: seen["steps"].append(row["step"]))
    return seen, cb


def test_the_recipe_is_the_trainers_run_from_conversations(tiny_model, tmp_path):
    seen, cb = _recorder()
    res = finetune(tiny_model, CONFIG, _conversations(), _conversations(3), tmp_path / "recipe", cb)
    tok = load_tokenizer(tiny_model)
    ref = Trainer(base_path=tiny_model.path, tokenizer=tok, config=CONFIG, train=encode_all(_conversations(), tok,
                  max_length=256), valid=encode_all(_conversations(3), tok, max_length=256),
                  output_dir=tmp_path / "trainer").run()
    assert [r["train_loss"] for r in res.metrics] == [r["train_loss"] for r in ref.metrics]
    a, b = load_file(res.output_dir / "adapter_model.safetensors"), load_file(ref.output_dir / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "recipe" / "results.csv").exists()
    assert seen["start"] == [{"examples": 9, "total_steps": 6, "resumed_from": None}]
    assert seen["steps"] == list(range(1, 7)) and not [m for lvl, m in seen["messages"] if lvl == "warn"]


def test_truncation_is_warned_and_a_stopped_run_resumes_from_its_checkpoint(tiny_model, tmp_path):
    short = replace(CONFIG, max_seq_length=50)
    seen, cb = _recorder()
    cb.should_stop = lambda: len(seen["steps"]) >= 3
    with pytest.raises(Cancelled):
        finetune(tiny_model, short, _conversations(), [], tmp_path / "run", cb)
    assert ("warn", "9 training example(s) longer than 50 tokens were truncated") in seen["messages"]
    seen, cb = _recorder()
    res = finetune(tiny_model, short, _conversations(), [], tmp_path / "run", cb)
    assert seen["start"] == [{"examples": 9, "total_steps": 6, "resumed_from": 3}]  # the epoch-end checkpoint
    assert seen["steps"] == [4, 5, 6] and res.resumed_from == 3
