"""The model a fine-tune trains: the base weights loaded with LoRA adapters on the chosen layers,
or with every weight trainable, and the parts of it that the trainer and the frozen-layer cache
(``training.frozen``) both reach into: the decoder stack and the output head under any PEFT
wrapping, and mixed-precision autocast."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

from tunery.training.config import FUSED_PROJECTIONS, TrainingConfig, check_layer_range, check_target_modules


def prepare_model(base_path: Path, config: TrainingConfig, device: str, *, start_adapter: Path | None = None):
    """Load the base weights and make them trainable (LoRA adapters or all weights). With
    ``start_adapter`` (continuing from a LoRA fine-tune), that adapter is merged into the base
    weights first: they are where training starts from, and DPO's reference."""
    import torch

    from tunery.models.loading import load_base_model, lora_module_names

    model = load_base_model(base_path, dtype=torch.float32)
    if start_adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, start_adapter).merge_and_unload()
    model.config.use_cache = False
    torch.manual_seed(config.seed)  # adapter initialisation depends on it
    if config.method == "lora":
        from peft import LoraConfig, get_peft_model

        layers = config.lora.layers
        check_layer_range(layers, model.config.num_hidden_layers, "this model")
        check_target_modules(config.lora.target_modules, lora_module_names(model), "this model")
        lcfg = LoraConfig(r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout,
                          target_modules=lora_targets(model, config.lora.target_modules), bias="none", task_type="CAUSAL_LM",
                          layers_to_transform=list(layers) if layers else None)
        model = get_peft_model(model, lcfg)
    else:
        for p in model.parameters():
            p.requires_grad_(True)
    model.to(device)
    model.train()
    return model


def lora_targets(model, targets) -> list[str]:
    """``targets`` as this model names its projections: a name the model lacks is replaced by the
    fused matrix that holds it, so the default targets fit Phi-3 as they fit Llama."""
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    out = [t if t in names or FUSED_PROJECTIONS.get(t) not in names else FUSED_PROJECTIONS[t] for t in targets]
    return list(dict.fromkeys(out))


def decoder_and_head(model):
    """The decoder stack and the output projection, under any PEFT wrapping."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.get_decoder(), inner.get_output_embeddings()


def autocast_context(device_type: str, dtype):
    import torch

    return torch.autocast(device_type, dtype=dtype) if dtype else nullcontext()
