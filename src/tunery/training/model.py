"""The model a fine-tune trains: the base weights loaded with LoRA adapters on the chosen layers,
or with every weight trainable, and the parts of it that the trainer and the frozen-layer cache
(``training.frozen``) both reach into: the decoder stack and the output head under any PEFT
wrapping, and mixed-precision autocast."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

from tunery.training.config import TrainingConfig, check_layer_range


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def prepare_model(base_path: Path, config: TrainingConfig, device: str):
    """Load the base weights and make them trainable (LoRA adapters or all weights)."""
    import torch

    from tunery.models.loading import load_base_model

    model = load_base_model(base_path, dtype=torch.float32)
    model.config.use_cache = False
    torch.manual_seed(config.seed)  # adapter initialisation depends on it
    if config.method == "lora":
        from peft import LoraConfig, get_peft_model

        layers = config.lora.layers
        check_layer_range(layers, model.config.num_hidden_layers, "this model")
        lcfg = LoraConfig(r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                          target_modules=list(config.lora.target_modules), bias="none", task_type="CAUSAL_LM",
                          layers_to_transform=list(layers) if layers else None)
        model = get_peft_model(model, lcfg)
    else:
        for p in model.parameters():
            p.requires_grad_(True)
    model.to(device)
    model.train()
    return model


def decoder_and_head(model):
    """The decoder stack and the output projection, under any PEFT wrapping."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.get_decoder(), inner.get_output_embeddings()


def autocast_context(device_type: str, dtype):
    import torch

    return torch.autocast(device_type, dtype=dtype) if dtype else nullcontext()
