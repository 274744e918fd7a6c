"""The ``hf`` format, and the common first step of every export: a plain Hugging Face folder with
the LoRA adapter (if any) merged into the base weights.

The folder carries everything another tool needs to run the model without tunery: safetensors
weights, the tokenizer, the chat template (as ``chat_template.jinja`` and inside
``tokenizer_config.json``) and a generation config whose end-of-turn ids stop generation."""

from __future__ import annotations

import contextlib
from pathlib import Path

from tunery.models.registry import ModelRecord


def write_merged(rec: ModelRecord, out_dir: Path) -> Path:
    """Write ``rec`` (base model, LoRA or full fine-tune, or checkpoint) as a merged HF folder."""
    import torch
    from transformers import GenerationConfig

    from tunery.models.loading import base_path, load_model, stop_token_ids

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, tok, _ = load_model(rec, dtype=torch.float32, merge=True)
    # PEFT leaves its bookkeeping on the merged model; a plain folder must not claim an adapter
    for attr in ("peft_config", "_hf_peft_config_loaded"):
        if hasattr(model, attr):
            with contextlib.suppress(AttributeError):
                delattr(model, attr)
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    if not (out_dir / "chat_template.jinja").exists() and isinstance(tok.chat_template, str):
        (out_dir / "chat_template.jinja").write_text(tok.chat_template)
    stops = stop_token_ids(tok, base_path(rec))
    GenerationConfig(bos_token_id=model.config.bos_token_id,
                     eos_token_id=stops if len(stops) > 1 else (stops[0] if stops else None),
                     pad_token_id=tok.pad_token_id, do_sample=False).save_pretrained(out_dir)
    del model
    return out_dir
