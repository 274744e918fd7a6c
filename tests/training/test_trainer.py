"""The trainer with the tiny model: it learns, it is reproducible, it resumes exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from support_chat import chat_lines
from tunery.chat import Conversation
from tunery.models.loading import load_tokenizer
from tunery.training import Callbacks, Cancelled, Trainer, TrainingConfig, encode_all
from tunery.training import checkpoint as ck


def _examples(tok, n=8):
    return encode_all([Conversation.from_dicts(x["messages"]) for x in chat_lines(n)], tok, max_length=256)


def _trainer(rec, out: Path, *, seed=1, method="lora", epochs=2, lr=5e-3, cb=None, every=0, valid=True):
    tok = load_tokenizer(rec)
    ex = _examples(tok)
    cfg = TrainingConfig(method=method, n_epochs=epochs, batch_size=2, learning_rate=lr, seed=seed,
                         max_seq_length=256, checkpoint_every=every, eval_every=2)
    return Trainer(base_path=rec.path, tokenizer=tok, config=cfg, train=ex, valid=ex[:3] if valid else None,
                   output_dir=out, callbacks=cb)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def test_lora_learns_and_writes_results(tiny_model, tmp_path):
    res = _trainer(tiny_model, tmp_path / "a", epochs=4, lr=2e-2).run()
    losses = [r["train_loss"] for r in res.metrics]
    assert res.steps == 16 and len(losses) == 16
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.3
    assert (res.output_dir / "adapter_model.safetensors").exists()
    header = (tmp_path / "a" / "results.csv").read_text().splitlines()[0]
    assert header == ("step,train_loss,train_mean_token_accuracy,valid_loss,valid_mean_token_accuracy,"
                      "full_valid_loss,full_valid_mean_token_accuracy")
    assert "full_valid_loss" in res.metrics[3] and "valid_loss" in res.metrics[1]
    assert all(0.0 <= r["train_mean_token_accuracy"] <= 1.0 for r in res.metrics)


def test_full_fine_tuning_changes_all_weights(tiny_model, tmp_path):
    res = _trainer(tiny_model, tmp_path / "full", method="full", epochs=1, lr=1e-3).run()
    before, after = _weights(tiny_model.path), _weights(res.output_dir)
    changed = [k for k in before if k in after and not torch.equal(before[k], after[k])]
    assert len(changed) >= len(before) - 1  # every trainable tensor moved


def test_same_seed_is_bit_identical_and_other_seed_differs(tiny_model, tmp_path):
    a = _trainer(tiny_model, tmp_path / "a", seed=3).run()
    b = _trainer(tiny_model, tmp_path / "b", seed=3).run()
    c = _trainer(tiny_model, tmp_path / "c", seed=4).run()
    assert [r["train_loss"] for r in a.metrics] == [r["train_loss"] for r in b.metrics]
    wa, wb, wc = _weights(a.output_dir), _weights(b.output_dir), _weights(c.output_dir)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)
    assert [r["train_loss"] for r in a.metrics] != [r["train_loss"] for r in c.metrics]


def test_resume_from_checkpoint_matches_uninterrupted(tiny_model, tmp_path):
    ref = _trainer(tiny_model, tmp_path / "ref", every=3).run()

    stop_at = {"n": 0}

    def stop():  # cancel after step 5; checkpoints exist at step 3 (every 3) and 4 (epoch end)
        return stop_at["n"] >= 5

    cb = Callbacks(on_metrics=lambda row: stop_at.__setitem__("n", row["step"]), should_stop=stop)
    with pytest.raises(Cancelled):
        _trainer(tiny_model, tmp_path / "run", every=3, cb=cb).run()
    assert [p.name for p in ck.list_checkpoints(tmp_path / "run" / "checkpoints")] == ["step-3", "step-4"]
    resumed = _trainer(tiny_model, tmp_path / "run", every=3).run()
    assert resumed.resumed_from == 4
    assert [r["step"] for r in resumed.metrics] == list(range(1, ref.steps + 1))
    assert [r["train_loss"] for r in resumed.metrics] == [r["train_loss"] for r in ref.metrics]
    wr, wx = _weights(ref.output_dir), _weights(resumed.output_dir)
    assert all(torch.equal(wr[k], wx[k]) for k in wr)


def test_a_pause_checkpoint_is_replaced_by_the_next_and_keeps_no_epoch_checkpoint_out(tiny_model, tmp_path):
    """A pause writes a checkpoint at the step it reached, only to go on from: the next checkpoint
    replaces it, so the three kept are still the three epochs' ends."""
    reached = {"n": 0}
    cb = Callbacks(on_metrics=lambda row: reached.__setitem__("n", row["step"]),
                   should_stop=lambda: reached["n"] >= 14, keep_on_stop=lambda: True)
    with pytest.raises(Cancelled):
        _trainer(tiny_model, tmp_path / "p", epochs=5, cb=cb).run()
    root = tmp_path / "p" / "checkpoints"
    # three epochs' ends, and the pause beside them: it pushed none of them out
    assert [p.name for p in ck.list_checkpoints(root)] == ["step-4", "step-8", "step-12", "step-14"]
    assert (root / "step-14" / ck.RESUME_ONLY).exists() and not (root / "step-12" / ck.RESUME_ONLY).exists()
    resumed = _trainer(tiny_model, tmp_path / "p", epochs=5).run()
    assert resumed.resumed_from == 14
    assert [p.name for p in ck.list_checkpoints(root)] == ["step-12", "step-16", "step-20"]


def test_keeps_last_three_checkpoints_and_each_loads(tiny_model, tmp_path):
    from peft import PeftModel

    from tunery.models.loading import load_base_model

    _trainer(tiny_model, tmp_path / "k", every=1, epochs=2).run()
    cps = ck.list_checkpoints(tmp_path / "k" / "checkpoints")
    assert [p.name for p in cps] == ["step-6", "step-7", "step-8"]
    model = PeftModel.from_pretrained(load_base_model(tiny_model.path), cps[0])
    ids = torch.tensor([[1, 2, 3]])
    assert model(input_ids=ids).logits.shape[-1] == model.config.vocab_size
    assert (cps[0] / "metrics.json").exists()


def test_full_resume_refuses_a_checkpoint_of_another_shape(tiny_model, tmp_path):
    from types import SimpleNamespace

    from safetensors.torch import save_file

    from tunery.errors import TuneryError
    from tunery.training.trainer import prepare_model

    config = SimpleNamespace(method="full")
    model = prepare_model(tiny_model.path, TrainingConfig(method="full", n_epochs=1, batch_size=1, learning_rate=1e-3,
                                                          seed=1, max_seq_length=64), "cpu")
    good = tmp_path / "good"
    ck.save_model(model, good)
    Trainer._load_weights(SimpleNamespace(config=config), model, good)  # its own checkpoint (tied head) loads
    state = load_file(good / "model.safetensors")
    name = next(n for n in state if "layers.1." in n)
    bad = tmp_path / "bad"
    bad.mkdir()
    save_file({k: v for k, v in state.items() if k != name}, bad / "model.safetensors")
    with pytest.raises(TuneryError, match=f"does not match the model.*missing: {name}"):
        Trainer._load_weights(SimpleNamespace(config=config), model, bad)
    save_file({**state, name: state[name][..., :1].contiguous()}, bad / "model.safetensors")
    with pytest.raises(TuneryError, match="wrong shape"):
        Trainer._load_weights(SimpleNamespace(config=config), model, bad)
