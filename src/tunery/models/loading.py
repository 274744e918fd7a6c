"""Load registered models into memory: tokenizer, base weights, LoRA adapters."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from tunery.errors import InvalidInput
from tunery.models import registry
from tunery.models.registry import ModelRecord

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def _quiet_transformers() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    logging.getLogger("transformers").setLevel(logging.ERROR)


def base_path(rec: ModelRecord) -> Path:
    """The folder holding the full weights this model runs on."""
    return rec.root().path


def tokenizer_dir(rec: ModelRecord) -> Path:
    """The folder whose tokenizer files a model uses: its own when it has them, else its base's."""
    return rec.path if (rec.path / "tokenizer_config.json").exists() else base_path(rec)


def load_tokenizer(model: str | ModelRecord) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    _quiet_transformers()
    rec = registry.get(model) if isinstance(model, str) else model
    path = tokenizer_dir(rec)
    tok = AutoTokenizer.from_pretrained(path)
    if tok.chat_template is None:
        raise InvalidInput(f"model {rec.id!r} has no chat template in {path}", param="model",
                           hint="add one to tokenizer_config.json (chat_template)")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def stop_token_ids(tokenizer: PreTrainedTokenizerBase | None, path: Path) -> list[int]:
    """End-of-turn token ids of a model folder: the eos ids of its generation config and, in an
    ONNX export, of its ``genai_config.json``, plus the tokenizer's (when one is given)."""
    ids: list[int] = []
    for name, eos_of in (("generation_config.json", lambda d: d.get("eos_token_id")),
                         ("genai_config.json", lambda d: d.get("model", {}).get("eos_token_id"))):
        if (Path(path) / name).exists():
            eos = eos_of(json.loads((Path(path) / name).read_text()))
            ids += eos if isinstance(eos, list) else ([eos] if eos is not None else [])
    if tokenizer is not None and tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return sorted({int(i) for i in ids})


def attention_mask(allowed: torch.Tensor, config, dtype: torch.dtype, *, plain_causal: bool = False
                   ) -> torch.Tensor | None:
    """An explicit 4-D mask (``True`` = may attend) in the form the model's attention takes: as is
    for sdpa, additive (0 or the dtype's minimum) for the eager implementation. A ``plain_causal``
    mask (square, nothing else hidden) is None for sdpa, whose causal fast path needs no mask; eager
    attention masks nothing without one, so it always gets the mask."""
    import torch

    if getattr(config, "_attn_implementation", None) != "eager":
        return None if plain_causal else allowed
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)


def load_base_model(path: Path, *, dtype: torch.dtype | None = None) -> PreTrainedModel:
    import torch
    from transformers import AutoModelForCausalLM

    _quiet_transformers()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32)
    model.eval()
    return model


def load_model(model: str | ModelRecord, *, dtype: torch.dtype | None = None, merge: bool = False
               ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, ModelRecord]:
    """Load any registered model ready for inference. A LoRA fine-tune loads its base and attaches
    the adapter (merged into the weights when ``merge``); a checkpoint of a job from a LoRA
    fine-tune, its adapter stacked onto that fine-tune's (:func:`tunery.models.stack.on_root`)."""
    from tunery.models.stack import on_root

    rec = registry.get(model) if isinstance(model, str) else model
    tok = load_tokenizer(rec)
    base = load_base_model(base_path(rec), dtype=dtype)
    if rec.is_adapter:
        from peft import PeftModel

        peft_model = PeftModel.from_pretrained(base, on_root(rec).path)
        base = peft_model.merge_and_unload() if merge else peft_model
        base.eval()
    return base, tok, rec
