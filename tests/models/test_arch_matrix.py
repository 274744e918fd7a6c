"""Every stage on every family people fine-tune: Qwen2, Qwen3, Phi-3, Gemma 2 and 3, Mistral, each
as a tiny random model with its family's architecture class and chat template (quirks included;
see tunery.models.tiny). The Llama (SmolLM2's family) runs through the rest of the suite.

Per family: the template locates the trained tokens (and only those) in single- and multi-turn
chats; data validation and statistics agree with it; LoRA (with the frozen-layer path where the
family takes it) and full fine-tuning learn; a stopped LoRA run resumes to the same result; a
LoRA fine-tune is served by the PyTorch engine and over the compiled int8 base (or falls back
with a notice naming why); ONNX and GGUF exports verify against the source or are refused with
a clear reason."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from support_chat import chat_lines
from tunery.chat import ChatMessage, Conversation, GenerationParams, Role
from tunery.chat_template import IGNORE, encode_all, render
from tunery.errors import InvalidInput

FAMILIES = ["qwen2", "qwen3", "phi3", "gemma2", "gemma3", "mistral"]
COMPILED = {"qwen2", "phi3", "mistral"}  # what the ONNX builder takes faithfully (see onnx_build)
GGUF = {"qwen2", "qwen3", "mistral"}  # what tunery.export.gguf_export writes
FROZEN = {"qwen2", "qwen3", "phi3", "mistral"}  # the frozen-layer short path (no sliding window)

MULTI = Conversation.from_dicts([
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Hello there"},
    {"role": "assistant", "content": "Hello! Where would you like to go?"},
    {"role": "user", "content": "Lisbon in May"},
    {"role": "assistant", "content": "Lisbon is mild and bright in May."},
])
QUICK = {"prompts": [MULTI.to_dicts()[:2]], "greedy_tokens": 8}  # the export's verification, briefly


@pytest.fixture(scope="session", params=FAMILIES)
def family_dir(request, tmp_path_factory) -> Path:
    from tunery.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp(request.param) / f"tiny-random-{request.param}",
                            arch=request.param)


@pytest.fixture
def family(family_dir: Path):
    """(family, base model record) registered in this test's home under its catalog name."""
    from tunery.models import ModelRecord, register

    arch = json.loads((family_dir / "tunery.json").read_text())["arch"]
    name = f"tiny-random-{arch}"
    return arch, register(ModelRecord(id=name, kind="base", path=family_dir, source="builtin-tiny",
                                      meta={"catalog": name, "context_length": 1024}))


def _convs(n: int = 8) -> list[Conversation]:
    return [Conversation.from_dicts(r["messages"]) for r in chat_lines(n)]


def _config(method: str = "lora", **kw):
    from tunery.training import TrainingConfig
    from tunery.training.config import LoraSettings

    lora = {"lora": LoraSettings(r=4, alpha=8, layers=(1,))} if method == "lora" else {}
    settings = dict(n_epochs=2, batch_size=2, learning_rate=1e-2, seed=3, max_seq_length=256, checkpoint_every=2)
    return TrainingConfig(method=method, **{**settings, **lora, **kw})


def test_the_template_trains_on_the_answers_and_nothing_else(family):
    from transformers import GenerationConfig

    from tunery.models.loading import load_tokenizer

    arch, rec = family
    tok = load_tokenizer(rec)
    multi, single = encode_all([MULTI, _convs(1)[0]], tok)
    trained = tok.decode([t for t in multi.labels if t != IGNORE])
    first, second = "Hello! Where would you like to go?", "Lisbon is mild and bright in May."
    assert first in trained and second in trained and trained.index(first) < trained.index(second), trained
    for untrained in ("Answer briefly", "Hello there", "Lisbon in May", "user", "model\n", "[INST]"):
        assert untrained not in trained.replace(second, ""), (untrained, trained)
    # each answer's end-of-turn marker is learnt, so generation stops
    eos = GenerationConfig.from_pretrained(rec.path).eos_token_id
    stops = set(eos if isinstance(eos, list) else [eos])
    positions = [i for i, t in enumerate(multi.labels) if t != IGNORE]
    assert multi.labels[positions[-1]] in stops, trained
    assert single.n_trained > 0
    # the system message reaches the model, folded into the first user turn where the template has
    # no system role (Gemma 2); Mistral's own template puts it before the last user turn only
    prompt = render(tok, list(MULTI)[:4], generation_prompt=True)
    assert "Answer briefly." in prompt, prompt


def test_validation_measures_each_example_as_training_encodes_it(family, tmp_path):
    from tunery.data import validate_file
    from tunery.models.loading import load_tokenizer

    arch, rec = family
    path = tmp_path / "train.jsonl"
    rows = chat_lines(12)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = validate_file(path, model=rec.id)
    assert report.ok and report.n_examples == 12, [i.format() for i in report.issues]
    encoded = encode_all([Conversation.from_dicts(r["messages"]) for r in rows], load_tokenizer(rec))
    assert [report.token_counts[line] for line in sorted(report.token_counts)] == [len(e) for e in encoded]


def test_lora_learns_and_a_stopped_run_resumes_to_the_same_weights(family, tmp_path):
    from safetensors.torch import load_file

    from tunery.training import Callbacks, Cancelled, finetune

    arch, rec = family
    whole = finetune(rec, _config(), _convs(4), _convs(2), tmp_path / "whole")
    losses = [r["train_loss"] for r in whole.metrics]
    assert len(losses) == 4 and losses[-1] < losses[0], losses
    steps: list[int] = []
    cb = Callbacks(on_metrics=lambda row: steps.append(row["step"]), should_stop=lambda: len(steps) >= 3)
    with pytest.raises(Cancelled):
        finetune(rec, _config(), _convs(4), _convs(2), tmp_path / "stopped", cb)
    again = finetune(rec, _config(), _convs(4), _convs(2), tmp_path / "stopped")
    assert again.resumed_from == 2 and [r["train_loss"] for r in again.metrics][-1] == losses[-1]
    a = load_file(whole.output_dir / "adapter_model.safetensors")
    b = load_file(again.output_dir / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_frozen_layer_path_is_taken_where_the_family_allows(family):
    from tunery.models.loading import base_path, load_tokenizer
    from tunery.training.batching import collate
    from tunery.training.frozen import FrozenLayers
    from tunery.training.model import prepare_model
    from tunery.training.trainer import batch_loss

    arch, rec = family
    model = prepare_model(base_path(rec), _config(), "cpu")
    frozen = FrozenLayers.for_model(model)
    assert (frozen is not None) == (arch in FROZEN)
    if frozen is not None:  # the short path is the plain computation
        tok = load_tokenizer(rec)
        examples = encode_all(_convs(4), tok)
        batch = collate(examples, tok.pad_token_id)
        plain, _, _ = batch_loss(model, batch)
        short, _, _ = batch_loss(model, batch, frozen=frozen, examples=examples)
        assert torch.allclose(plain, short, rtol=1e-5), (float(plain), float(short))


def test_full_fine_tuning_changes_every_weight(family, tmp_path):
    from safetensors.torch import load_file

    from tunery.training import finetune

    arch, rec = family
    res = finetune(rec, _config("full", n_epochs=1), _convs(4), [], tmp_path / "full")
    before = {}
    for f in sorted(rec.path.glob("*.safetensors")):
        before.update(load_file(f))
    after = {}
    for f in sorted(res.output_dir.glob("*.safetensors")):
        after.update(load_file(f))
    assert before.keys() == after.keys()
    unchanged = [k for k in before if torch.equal(before[k], after[k])]
    assert not unchanged, unchanged


_TRAINED: dict[str, Path] = {}


@pytest.fixture
def fine_tune(family, tmp_path_factory):
    """A LoRA fine-tune of the family's tiny model on every projection (trained once per session),
    registered."""
    from tunery.models import ModelRecord, register
    from tunery.training import finetune
    from tunery.training.config import LoraSettings

    arch, rec = family
    if arch not in _TRAINED:
        cfg = replace(_config(n_epochs=1), lora=LoraSettings(r=4, alpha=8))  # every layer
        _TRAINED[arch] = finetune(rec, cfg, _convs(4), [], tmp_path_factory.mktemp(f"ft-{arch}")).output_dir
    return arch, register(ModelRecord(id=f"ft:{rec.id}:x:abc", kind="fine-tuned", parent=rec.id, method="lora",
                                      path=_TRAINED[arch], source="test"))


def test_a_fine_tune_is_served_by_both_engines(fine_tune):
    from tunery.serving import LocalChatModel
    from tunery.serving.manager import serving_info, shutdown

    arch, ft = fine_tune
    shutdown()
    messages = [ChatMessage(Role.SYSTEM, "Answer briefly."), ChatMessage(Role.USER, "Hello there")]
    params = GenerationParams(max_tokens=6, temperature=0)
    fp32 = LocalChatModel(ft.id, precision="fp32").generate(messages, params)
    info = serving_info(ft, "int8")
    int8 = LocalChatModel(ft.id, precision="int8").generate(messages, params)
    assert fp32.usage.completion_tokens > 0 and int8.usage.completion_tokens > 0
    if arch in COMPILED:
        assert info["engine"] == "onnx" and info["precision"] == "int8", info
    else:
        assert info["engine"] == "torch" and "ONNX" in info["notice"], info
    shutdown()


def test_exports_verify_or_are_refused_with_the_reason(fine_tune, tmp_path):
    from tunery.export import export_model

    arch, ft = fine_tune
    if arch in COMPILED:
        res = export_model(ft.id, "onnx", tmp_path / "onnx", quantize="none", **QUICK)
        assert res.report.top1_agreement >= 0.98
    else:
        with pytest.raises(InvalidInput, match="ONNX"):
            export_model(ft.id, "onnx", tmp_path / "onnx", quantize="none", **QUICK)
    if arch in GGUF:
        res = export_model(ft.id, "gguf", tmp_path / "gguf", quantize="f16", **QUICK)
        assert res.report.top1_agreement >= 0.95
    else:
        with pytest.raises(InvalidInput, match="GGUF export supports"):
            export_model(ft.id, "gguf", tmp_path / "gguf", quantize="f16", **QUICK)
