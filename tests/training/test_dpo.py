"""DPO in the trainer's loop, on the tiny model: the loss is TRL's formula, the reference is the
base, it learns, it is reproducible, it resumes exactly, and it reports TRL's metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from tunery.chat import Conversation
from tunery.data.preference import PreferencePair, encode_pairs
from tunery.models.loading import load_base_model, load_tokenizer
from tunery.training import Callbacks, Cancelled, TrainingConfig
from tunery.training import checkpoint as ck
from tunery.training.config import LoraSettings
from tunery.training.dpo import DPO_METRIC_COLUMNS, DPOTrainer, dpo_loss, sequence_logps
from tunery.training.model import prepare_model

CITIES = ["Rome", "Paris", "Oslo", "Lima", "Cairo", "Kyoto", "Lisbon", "Quito", "Hanoi", "Dakar"]


def _pairs(n=8) -> list[PreferencePair]:
    out = []
    for i in range(n):
        c = CITIES[i % len(CITIES)]
        prompt = Conversation.from_dicts([{"role": "system", "content": "You are a concise travel helper."},
                                          {"role": "user", "content": f"What should I see in {c}?"}])
        out.append(PreferencePair(prompt, f"Walk the old town of {c}. When do you go?",
                                  f"Stay at the Grand {c} Hotel, it is the best."))
    return out


def _config(*, seed=1, epochs=3, every=0, layers=None, method="lora", lr=2e-2, beta=0.1) -> TrainingConfig:
    return TrainingConfig(method=method, n_epochs=epochs, batch_size=2, learning_rate=lr, seed=seed,
                          max_seq_length=256, checkpoint_every=every, eval_every=2, objective="dpo", beta=beta,
                          lora=LoraSettings(r=8, alpha=16, layers=layers))


def _trainer(rec, out: Path, cb=None, **kw) -> DPOTrainer:
    tok = load_tokenizer(rec)
    pairs = encode_pairs(_pairs(), tok, max_length=256)
    cfg = _config(**kw)
    return DPOTrainer(base_path=rec.path, tokenizer=tok, config=cfg, train=pairs, valid=pairs[:3],
                      output_dir=out, callbacks=cb, beta=cfg.beta)


def test_dpo_loss_is_trls_formula():
    g = torch.Generator().manual_seed(0)
    pi_c, pi_r, ref_c, ref_r = (torch.randn(5, generator=g) * 10 for _ in range(4))
    losses, r_c, r_r = dpo_loss(pi_c, pi_r, ref_c, ref_r, 0.3)
    by_hand = -F.logsigmoid(0.3 * ((pi_c - ref_c) - (pi_r - ref_r)))
    assert torch.allclose(losses, by_hand)
    assert torch.allclose(r_c, 0.3 * (pi_c - ref_c)) and torch.allclose(r_r, 0.3 * (pi_r - ref_r))
    # the loss of a pair whose rewards tie is log 2
    assert dpo_loss(torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(1), 0.1)[0].item() == \
        pytest.approx(0.693147, abs=1e-6)


def test_sequence_logps_sum_the_answer_tokens_of_a_plain_forward(tiny_model):
    tok = load_tokenizer(tiny_model)
    chosen, rejected = encode_pairs(_pairs(1), tok)[0]
    model = load_base_model(tiny_model.path)
    with torch.no_grad():
        got = sequence_logps(model, [chosen, rejected], tok.pad_token_id, "cpu")
        for value, e in zip(got, (chosen, rejected), strict=True):
            logits = model(input_ids=torch.tensor([e.input_ids])).logits[0, :-1].log_softmax(-1)
            labels = torch.tensor(e.labels[1:])
            keep = labels != -100
            expect = logits[keep].gather(1, labels[keep][:, None]).sum()
            assert value.item() == pytest.approx(expect.item(), rel=1e-5, abs=1e-4)


@pytest.mark.parametrize("layers", [None, (1,)])  # all layers, and the frozen-layer cache (layer 0 frozen)
def test_reference_is_the_base_with_adapters_off(tiny_model, layers):
    tok = load_tokenizer(tiny_model)
    pair = encode_pairs(_pairs(1), tok)[0]
    model = prepare_model(tiny_model.path, _config(layers=layers), "cpu")
    with torch.no_grad():  # make the adapters matter, as after training
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.add_(0.5)
    base = load_base_model(tiny_model.path)
    ids = torch.tensor([pair[0].input_ids])
    with torch.no_grad(), model.disable_adapter():
        off = model(input_ids=ids).logits
    with torch.no_grad():
        on = model(input_ids=ids).logits
    assert torch.equal(off, base(input_ids=ids).logits)
    assert not torch.allclose(on, off)
    trainer = DPOTrainer(base_path=tiny_model.path, tokenizer=tok, config=_config(layers=layers), train=[pair],
                         valid=None, output_dir=Path("/nonexistent"))
    trainer._prepare(model, "cpu", None, None)
    with torch.no_grad():
        expect = sequence_logps(base, list(pair), tok.pad_token_id, "cpu")
    assert torch.allclose(trainer.ref["train"][0], expect, atol=1e-4)


@pytest.mark.parametrize("layers", [None, (1,)])
def test_dpo_learns_to_prefer_the_chosen_answers(tiny_model, tmp_path, layers):
    res = _trainer(tiny_model, tmp_path / "a", layers=layers).run()
    losses = [r["train_loss"] for r in res.metrics]
    assert res.steps == 12
    assert losses[0] == pytest.approx(0.6931, abs=0.01)  # policy = reference at the first step
    assert sum(losses[-3:]) / 3 < losses[0] - 0.2
    last = res.metrics[-1]
    assert last["rewards/accuracies"] == 1.0 and last["rewards/margins"] > 0
    assert last["rewards/margins"] == pytest.approx(last["rewards/chosen"] - last["rewards/rejected"])
    assert last["full_valid_rewards/accuracies"] == 1.0 and "valid_loss" in res.metrics[1]
    header = (tmp_path / "a" / "results.csv").read_text().splitlines()[0]
    assert header == ",".join(DPO_METRIC_COLUMNS)
    assert (res.output_dir / "adapter_model.safetensors").exists()


def test_same_seed_is_bit_identical_and_other_seed_differs(tiny_model, tmp_path):
    a = _trainer(tiny_model, tmp_path / "a", seed=3, epochs=2).run()
    b = _trainer(tiny_model, tmp_path / "b", seed=3, epochs=2).run()
    c = _trainer(tiny_model, tmp_path / "c", seed=4, epochs=2).run()
    assert [r["train_loss"] for r in a.metrics] == [r["train_loss"] for r in b.metrics]
    wa, wb, wc = (load_file(x.output_dir / "adapter_model.safetensors") for x in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)


def test_resume_after_a_stop_matches_the_uninterrupted_run(tiny_model, tmp_path):
    ref = _trainer(tiny_model, tmp_path / "ref", every=3, layers=(1,)).run()
    seen = {"n": 0}
    cb = Callbacks(on_metrics=lambda row: seen.__setitem__("n", row["step"]), should_stop=lambda: seen["n"] >= 5)
    with pytest.raises(Cancelled):
        _trainer(tiny_model, tmp_path / "run", cb=cb, every=3, layers=(1,)).run()
    assert [p.name for p in ck.list_checkpoints(tmp_path / "run" / "checkpoints")][-1] == "step-4"
    assert "reference_logps" in ck.load_state(ck.latest(tmp_path / "run" / "checkpoints"))
    resumed = _trainer(tiny_model, tmp_path / "run", every=3, layers=(1,)).run()
    assert resumed.resumed_from == 4
    assert [r["train_loss"] for r in resumed.metrics] == [r["train_loss"] for r in ref.metrics]
    wr, wx = (load_file(x.output_dir / "adapter_model.safetensors") for x in (ref, resumed))
    assert all(torch.equal(wr[k], wx[k]) for k in wr)


def test_a_stacked_adapter_equals_the_two_applied_in_turn(tiny_model_dir, tmp_path):
    """Continuing from a LoRA fine-tune: the first adapter merged, a second on top (other layers and
    modules), saved as one adapter on the base, with the same outputs."""
    from peft import LoraConfig, PeftModel, get_peft_model

    from support_adapters import make_adapter
    from tunery.models.stack import stack

    first = make_adapter(tiny_model_dir, tmp_path / "first", seed=1)
    torch.manual_seed(2)
    merged = PeftModel.from_pretrained(load_base_model(tiny_model_dir), first).merge_and_unload()
    second = get_peft_model(merged, LoraConfig(r=2, lora_alpha=6, target_modules=["q_proj", "v_proj"],
                                               layers_to_transform=[1]))
    for name, p in second.named_parameters():
        if "lora_B" in name:
            p.data = torch.randn(p.shape) * 0.3
    second.save_pretrained(tmp_path / "second")
    stack(first, tmp_path / "second", tmp_path / "both")
    ids = torch.tensor([[1, 5, 9, 13, 17, 21]])
    with torch.no_grad():
        expect = second(input_ids=ids).logits
        got = PeftModel.from_pretrained(load_base_model(tiny_model_dir), tmp_path / "both")(input_ids=ids).logits
    assert torch.allclose(got, expect, atol=1e-5)
    assert not torch.allclose(got, load_base_model(tiny_model_dir)(input_ids=ids).logits, atol=1e-3)
