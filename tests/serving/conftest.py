"""Fixtures for the serving tests: a random LoRA adapter on the tiny model, and a clean
process-wide rate limiter per test."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _clean_limiter():
    from tunery.serving.ratelimit import limiter

    limiter.reset()
    yield
    limiter.reset()


def make_lora(base_dir: Path, out: Path, seed: int) -> Path:
    """A LoRA adapter with random (non-zero) weights, so it visibly changes the tiny model's answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_" in name:
                p.mul_(20.0)  # strong enough to change greedy and sampled tokens
    peft.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def lora_dirs(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("loras")
    return [make_lora(tiny_model_dir, root / f"lora{i}", seed=i) for i in range(2)]


@pytest.fixture
def tiny_loras(tiny_model, lora_dirs: list[Path]):
    """Two LoRA fine-tunes of ``tiny-random`` registered as ``tiny-ft-0`` and ``tiny-ft-1``."""
    from tunery.models import ModelRecord, register

    return [register(ModelRecord(id=f"tiny-ft-{i}", kind="fine-tuned", path=d, source="test", parent="tiny-random",
                                 method="lora", meta={"catalog": "tiny-random"}))
            for i, d in enumerate(lora_dirs)]
