"""Skipping the frozen lower layers: same loss and gradients as the plain forward, still
bit-reproducible and exactly resumable."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from support_chat import chat_lines
from tunery.chat import Conversation
from tunery.errors import InvalidInput
from tunery.models.loading import load_tokenizer
from tunery.training import Callbacks, Cancelled, Trainer, TrainingConfig, encode_all
from tunery.training.batching import collate
from tunery.training.config import LoraSettings
from tunery.training.frozen import FrozenLayers, first_trained_layer
from tunery.training.trainer import batch_loss, prepare_model


def _config(**kw) -> TrainingConfig:
    base = TrainingConfig(method="lora", n_epochs=2, batch_size=3, learning_rate=2e-2, seed=5, max_seq_length=256,
                          lora=LoraSettings(r=4, alpha=8, layers=(1,)), eval_every=2)
    return replace(base, **kw)


def _examples(tok, n=9):
    rows = chat_lines(n, system="You are a travel helper who always asks one question back.")
    for i, r in enumerate(rows):  # uneven lengths, so batches carry padding
        r["messages"][2]["content"] += " Tell me more." * (i % 3)
    return encode_all([Conversation.from_dicts(r["messages"]) for r in rows], tok, max_length=256)


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("share_prefix", [True, False])
def test_skipping_frozen_layers_gives_the_plain_loss_and_gradients(tiny_model, share_prefix, attn):
    tok = load_tokenizer(tiny_model)
    ex = _examples(tok)[:4]
    model = prepare_model(tiny_model.path, _config(), "cpu")
    model.set_attn_implementation(attn)  # eager attention takes additive masks, sdpa boolean ones
    assert model.config._attn_implementation == attn
    batch = collate(ex, tok.pad_token_id, share_prefix=share_prefix)
    assert batch.attention_mask is not None and (batch.prefix_len > 0) == share_prefix

    plain, n1, ok1 = batch_loss(model, batch)
    plain.backward()
    g_plain = _grads(model)
    model.zero_grad()

    frozen = FrozenLayers.for_model(model)
    assert frozen is not None and frozen.start == 1
    if share_prefix:  # the frozen layers also run the common system message once
        assert frozen.share_prefix(ex) >= batch.prefix_len > 0
    fast, n2, ok2 = batch_loss(model, batch, frozen=frozen, examples=ex)
    fast.backward()
    g_fast = _grads(model)

    assert (n1, ok1) == (n2, ok2)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    assert g_plain.keys() == g_fast.keys() and g_plain
    for k in g_plain:
        torch.testing.assert_close(g_fast[k], g_plain[k], rtol=1e-4, atol=1e-6)
    assert frozen.used > 0  # outputs were kept for the next epoch


def test_first_trained_layer_and_when_the_short_path_applies(tiny_model):
    assert first_trained_layer(prepare_model(tiny_model.path, _config(), "cpu")) == 1
    every = prepare_model(tiny_model.path, _config(lora=LoraSettings(r=4, alpha=8)), "cpu")
    assert first_trained_layer(every) == 0 and FrozenLayers.for_model(every) is None
    full = prepare_model(tiny_model.path, _config(method="full"), "cpu")
    assert first_trained_layer(full) == 0  # the embeddings train


def test_budget_zero_keeps_nothing_but_gives_the_same_loss(tiny_model):
    tok = load_tokenizer(tiny_model)
    ex = _examples(tok)[:3]
    model = prepare_model(tiny_model.path, _config(), "cpu")
    batch = collate(ex, tok.pad_token_id)
    kept = FrozenLayers.for_model(model)
    none = FrozenLayers.for_model(model, budget_bytes=0)
    a, _, _ = batch_loss(model, batch, frozen=kept, examples=ex)
    b, _, _ = batch_loss(model, batch, frozen=none, examples=ex)
    assert torch.equal(a, b) and none.used == 0 and kept.used > 0


def _run(rec, out, cb=None, **kw):
    tok = load_tokenizer(rec)
    ex = _examples(tok)
    return Trainer(base_path=rec.path, tokenizer=tok, config=_config(**kw), train=ex, valid=ex[:3], output_dir=out,
                   callbacks=cb).run()


def test_upper_layer_lora_trains_reproducibly_and_resumes_exactly(tiny_model, tmp_path):
    ref = _run(tiny_model, tmp_path / "ref", checkpoint_every=2)
    again = _run(tiny_model, tmp_path / "again", checkpoint_every=2)
    plain = _run(tiny_model, tmp_path / "plain", checkpoint_every=2, cache_frozen_layers=False)
    losses = [r["train_loss"] for r in ref.metrics]
    assert losses == [r["train_loss"] for r in again.metrics]
    assert losses[-1] < losses[0]
    # the short path is the plain computation, up to float rounding
    assert [round(x, 4) for x in losses] == [round(r["train_loss"], 4) for r in plain.metrics]

    from safetensors.torch import load_file

    adapted = load_file(ref.output_dir / "adapter_model.safetensors")
    assert adapted and all(".layers.1." in k for k in adapted)

    seen = {"n": 0}
    cb = Callbacks(on_metrics=lambda row: seen.__setitem__("n", row["step"]), should_stop=lambda: seen["n"] >= 4)
    with pytest.raises(Cancelled):
        _run(tiny_model, tmp_path / "run", cb=cb, checkpoint_every=2)
    resumed = _run(tiny_model, tmp_path / "run", checkpoint_every=2)
    assert resumed.resumed_from == 4
    assert [r["train_loss"] for r in resumed.metrics] == losses
    done = load_file(resumed.output_dir / "adapter_model.safetensors")
    assert all(torch.equal(done[k], adapted[k]) for k in adapted)


def test_bad_lora_layers_are_named(tiny_model):
    with pytest.raises(InvalidInput, match="between 0 and 1") as e:
        prepare_model(tiny_model.path, _config(lora=LoraSettings(layers=(0, 7))), "cpu")
    assert e.value.param == "lora.layers"
    from tunery.models.catalog import TrainingDefaults

    with pytest.raises(InvalidInput, match="layer indices"):
        LoraSettings.from_defaults(TrainingDefaults(), {"layers": "top"})


def test_kept_outputs_belong_to_the_example_not_to_its_memory_address(tiny_model):
    tok = load_tokenizer(tiny_model)
    a, b = _examples(tok)[:2]
    model = prepare_model(tiny_model.path, _config(), "cpu")
    frozen = FrozenLayers.for_model(model)
    first = replace(a)
    frozen.hidden(first)
    address = id(first)
    del first
    # a new example object soon takes the freed address (CPython reuses it): it must get its own outputs
    kept = [replace(b) for _ in range(1000)]
    recycled = next(e for e in kept if id(e) == address)
    torch.testing.assert_close(frozen.hidden(recycled), FrozenLayers.for_model(model, budget_bytes=0).hidden(b))
