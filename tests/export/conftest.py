"""A LoRA fine-tune of the tiny model (adapter B initialised non-zero, so merging changes the
weights) and, once per session, its exports in every format."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FT_ID = "ft:tiny-random:x:abc"


def make_adapter(base_dir: Path, out: Path, *, seed: int = 0, scale: float = 0.3) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # PEFT starts B at zero: a no-op adapter would hide a broken merge
            p.data = torch.randn(p.shape, generator=gen) * scale
    model.save_pretrained(out)
    return out


def register_ft(adapter_dir: Path):
    from tunery.models import ModelRecord, register

    return register(ModelRecord(id=FT_ID, kind="fine-tuned", parent="tiny-random", method="lora",
                                path=adapter_dir, source="test"))


@pytest.fixture(scope="session")
def adapter_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapter") / "lora")


@pytest.fixture
def tiny_ft(tiny_model, adapter_dir: Path):
    """The fine-tune registered in this test's home (beside ``tiny-random``)."""
    return register_ft(adapter_dir)


EXPORTS = [("hf", "none"), ("onnx", "none"), ("onnx", "int8"), ("onnx", "int4"),
           ("gguf", "f16"), ("gguf", "q8_0"), ("gguf", "q4_1")]


@pytest.fixture(scope="session")
def exports(tiny_model_dir: Path, adapter_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """{(format, quantize): ExportResult} of the tiny fine-tune, built once in a home of its own."""
    from tunery.export import export_model
    from tunery.models import ModelRecord, register
    from tunery.models.catalog import CATALOG

    root = tmp_path_factory.mktemp("exports")
    saved = os.environ.get("TUNERY_HOME")
    os.environ["TUNERY_HOME"] = str(root / "home")
    try:
        register(ModelRecord(id="tiny-random", kind="base", path=tiny_model_dir, source="builtin-tiny",
                             meta={"catalog": "tiny-random", "context_length": CATALOG["tiny-random"].context_length}))
        register_ft(adapter_dir)
        return {(fmt, q): export_model(FT_ID, fmt, root / f"{fmt}-{q}", quantize=q) for fmt, q in EXPORTS}
    finally:
        if saved is None:
            os.environ.pop("TUNERY_HOME", None)
        else:
            os.environ["TUNERY_HOME"] = saved
