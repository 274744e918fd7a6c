"""LoRA adapters for export tests (importable as ``support_adapters``): B initialised non-zero,
so merging really changes the weights."""

from __future__ import annotations

from pathlib import Path

FT_ID = "ft:tiny-random:x:abc"


def make_adapter(base_dir: Path, out: Path, *, seed: int = 0, scale: float = 0.3,
                 layers: list[int] | None = None) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, layers_to_transform=layers, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # PEFT starts B at zero: a no-op adapter would hide a broken merge
            p.data = torch.randn(p.shape, generator=gen) * scale
    model.save_pretrained(out)
    return out


def register_ft(adapter_dir: Path, *, ft_id: str = FT_ID, parent: str = "tiny-random"):
    from tunery.models import ModelRecord, register

    return register(ModelRecord(id=ft_id, kind="fine-tuned", parent=parent, method="lora",
                                path=adapter_dir, source="test"))
