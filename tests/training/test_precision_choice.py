"""Training precision chosen by measurement: the probe, its cache per machine, the decision rule
and the held-out loss check."""

from __future__ import annotations

import json

import pytest

from tunery.errors import InvalidInput
from tunery.training import precision as prec


def test_the_probe_times_both_precisions_on_this_machine():
    import torch

    threads = torch.get_num_threads()
    m = prec.measure(rounds=2, tokens=16)
    assert m.fp32_s > 0 and m.bf16_s > 0 and m.speedup == m.fp32_s / m.bf16_s
    assert "torch" in m.machine and m.machine.endswith(f"probe {prec._PROBE}")
    assert torch.get_num_threads() == threads  # the probe's one thread is put back


def test_the_probe_takes_the_two_precisions_in_turns():
    """A machine that gets busy part-way must not slow one precision's steps only: the probe
    alternates them, so a busy spell (three steps 20x slower, two of them bfloat16's, enough for
    two rounds to show bfloat16 over 4x slower) leaves each one's best step alone; it stops after
    three rounds where bfloat16 cannot win."""
    def probe(costs: dict[bool, float]) -> tuple[tuple[float, float], list[bool]]:
        order: list[bool] = []

        def step(bf16: bool) -> float:
            order.append(bf16)
            return costs[bf16] * (20 if 4 <= len(order) <= 6 else 1)

        return prec._in_turns(step, rounds=5), order

    best, order = probe({False: 3.0, True: 1.0})
    assert best == (3.0, 1.0) and order == [False, True] * 6
    best, order = probe({False: 1.0, True: 16.0})  # emulated bfloat16
    assert order == [False, True] * 4 and best[1] > 4 * best[0]


def test_auto_follows_the_measurement_and_remembers_it_per_machine(monkeypatch, tunery_home):
    calls = []
    path = tunery_home / "cache" / "train-precision.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    # what the first probe kept (two threads, measured during a build): its key is not this probe's
    old = prec.machine_signature().replace(f"probe {prec._PROBE}", "x2")
    path.write_text(json.dumps({old: {"machine": old, "fp32_s": 0.30, "bf16_s": 0.34}}))

    def fake(**kw):
        calls.append(kw)
        return prec.Measurement(prec.machine_signature(), fp32_s=2.0, bf16_s=1.0)

    monkeypatch.setattr(prec, "measure", fake)
    monkeypatch.setattr(prec, "_memo", {})
    choice = prec.choose("auto", "cpu")
    assert choice.precision == "bf16" and "2.00x faster" in choice.reason and len(calls) == 1
    prec._memo.clear()  # a new process: the home's cache answers, no second measurement
    assert prec.choose(None, "cpu").precision == "bf16" and len(calls) == 1
    assert list(json.loads(path.read_text())) == [old, prec.machine_signature()]
    prec._memo.clear()
    path.unlink()
    monkeypatch.setattr(prec, "measure", lambda **kw: prec.Measurement("slow", 1.0, 8.0))
    choice = prec.choose("auto", "cpu")
    assert choice.precision == "fp32" and "0.12x" in choice.reason


def test_an_explicit_precision_wins_and_a_bad_one_is_named():
    assert prec.choose("bf16", "cpu") == prec.Choice("bf16", "bf16 as requested")
    assert prec.choose("FP32", "cpu").precision == "fp32"
    with pytest.raises(InvalidInput, match="fp16") as e:
        prec.choose("fp16", "cpu")
    assert e.value.param == "precision"


def test_bf16_is_kept_only_when_the_held_out_loss_agrees():
    assert prec.loss_agrees(2.0, 2.015)
    assert not prec.loss_agrees(2.0, 2.03)


def _finetune(rec, out, precision="auto"):
    from support_chat import chat_lines
    from tunery.chat import Conversation
    from tunery.training import Callbacks, TrainingConfig, finetune
    from tunery.training.config import LoraSettings

    messages = []
    convs = [Conversation.from_dicts(r["messages"]) for r in chat_lines(4)]
    cfg = TrainingConfig(method="lora", n_epochs=1, batch_size=2, learning_rate=1e-2, seed=1, max_seq_length=256,
                         lora=LoraSettings(r=4, alpha=8), precision=precision)
    res = finetune(rec, cfg, convs, convs[:2], out, Callbacks(on_message=lambda level, m: messages.append(m)))
    return res, [m for m in messages if m.startswith("Training in")]


@pytest.mark.parametrize("agrees", [True, False])
def test_a_job_trains_in_bf16_only_where_faster_and_the_loss_agrees(tiny_model, tmp_path, monkeypatch, agrees):
    monkeypatch.delenv("TUNERY_TRAIN_PRECISION")
    monkeypatch.setattr(prec, "_memo", {})
    monkeypatch.setattr(prec, "measure", lambda **kw: prec.Measurement("fast bf16", 1.0, 0.5))
    monkeypatch.setattr(prec, "loss_agrees", lambda fp32, bf16: agrees)
    auto, said = _finetune(tiny_model, tmp_path / "auto")
    fp32, _ = _finetune(tiny_model, tmp_path / "fp32", precision="fp32")
    same = [r["train_loss"] for r in auto.metrics] == [r["train_loss"] for r in fp32.metrics]
    if agrees:
        assert said == ["Training in bf16 autocast: 2.00x faster than fp32 on this CPU (measured)"] and not same
    else:
        assert len(said) == 1 and "moved the held-out loss" in said[0] and same


def test_the_suite_default_and_an_explicit_setting_are_reported(tiny_model, tmp_path):
    _, said = _finetune(tiny_model, tmp_path / "pinned")  # conftest pins TUNERY_TRAIN_PRECISION=fp32
    assert said == ["Training in fp32 as requested"]


def test_an_explicit_request_beats_the_machine_default(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(prec, "_memo", {})
    monkeypatch.setattr(prec, "measure", lambda **kw: prec.Measurement("slow bf16", 1.0, 8.0))
    _, said = _finetune(tiny_model, tmp_path / "asked", precision="bf16")  # TUNERY_TRAIN_PRECISION=fp32 is set
    assert said == ["Training in bf16 as requested"]
