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


def second_adapter(base_dir: Path, first: Path, out: Path):
    """What a job from the LoRA fine-tune ``first`` checkpoints: a new LoRA over ``first`` merged
    in (saved to ``out``); returns that PyTorch model, the one the checkpoint stands for."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model

    from tunery.models.loading import load_base_model

    torch.manual_seed(5)
    merged = PeftModel.from_pretrained(load_base_model(base_dir), first).merge_and_unload()
    second = get_peft_model(merged, LoraConfig(r=2, lora_alpha=6, target_modules=["q_proj", "v_proj"]))
    for name, p in second.named_parameters():
        if "lora_B" in name:
            p.data = torch.randn(p.shape) * 2.0
    second.save_pretrained(out)
    return second


def checkpoint_of_ft(tiny_model, chat_file, tmp_path: Path):
    """``ft:...:ckpt-step-3`` of a LoRA job whose model is the fine-tune ``FT_ID``, the PyTorch model
    it stands for, and the job's id (the job itself never runs)."""
    from tunery.data import files
    from tunery.jobs import create_job, store
    from tunery.models.loading import load_tokenizer

    first = make_adapter(tiny_model.path, tmp_path / "first", seed=1, scale=1.0)
    register_ft(first)
    job = create_job(model=FT_ID, training_file=files.create_from_path(chat_file(12)).id, suffix="ck")
    step = tmp_path / "job" / "checkpoints" / "step-3"
    reference = second_adapter(tiny_model.path, first, step).eval()
    load_tokenizer(tiny_model).save_pretrained(step)  # a checkpoint holds the tokenizer too
    name = f"{store.model_name('tiny-random', 'ck', job['id'])}:ckpt-step-3"
    store.add_checkpoint(job["id"], 3, str(step), name, {"step": 3})
    return name, reference, job["id"]
