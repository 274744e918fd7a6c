"""The ``onnx`` format: a decoder with a KV cache for ONNX Runtime on CPU, built by
onnxruntime-genai's model builder from the merged Hugging Face folder.

Why the model builder: it reads a local folder with no network, emits the fused graph ONNX Runtime
runs fastest on CPU (GroupQueryAttention, SkipSimplifiedLayerNormalization, rotary caches), writes
``genai_config.json`` so onnxruntime-genai's generator loop can drive it, and quantizes with ONNX
Runtime's own ``MatMulNBits`` quantizers. What we choose per ``--quantize`` (measured on
SmolLM2-135M, see README.md beside this file):

* ``none``: float32 weights.
* ``int8``: 8-bit block-wise weights (``MatMulNBits``, blocks of 32) whose activations are
  quantized to int8 on the fly (``accuracy_level=4``), i.e. dynamic int8 quantization done per
  block. ONNX Runtime's classic ``quantize_dynamic`` (per-tensor ``MatMulInteger``) raised the
  validation loss by ~30% on this model, so it is not used.
* ``int4``: 4-bit block-wise weights computed by GPTQ (``tunery.compiled.gptq``) from calibration
  chats (a fine-tune's own training file by default), the attention's input projections at 8
  bits, the LM head at the builder's 8 bits (its blocks are the embedding table's too), gate and
  up projections fused. The builder writes its int4 graph by round-to-nearest with an 8-bit LM
  head (``algo_config=rtn_last``: 10 s, where its k-quant search takes 50 s for weights that are
  replaced anyway); GPTQ then replaces its block weights, with Hessians from the PyTorch model on
  the calibration chats. On the default fine-tune: +1.8% held-out loss where the builder's own
  recipe lost 7.4%. Without calibration data the builder's recipe (``algo_config=k_quant_mixed``)
  is kept as is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tunery.errors import InvalidInput, TuneryError
from tunery.home import atomic_write_json
from tunery.progress import Progress, say

BUILDER_PRECISION = {"none": "fp32", "int8": "int8", "int4": "int4", "gptq": "int4"}
BUILDER_OPTIONS: dict[str, list[str]] = {
    "none": [],
    "int8": ["accuracy_level=4"],
    "int4": ["accuracy_level=4", "algo_config=k_quant_mixed"],
    "gptq": ["accuracy_level=4", "algo_config=rtn_last"],  # the int4 graph whose weights GPTQ replaces
}
# not gemma3_text: the builder of onnxruntime-genai 0.18 reads a rope_parameters layout that
# transformers 5 no longer writes for Gemma 3 (KeyError 'rope_type'; measured on the tiny Gemma 3)
SUPPORTED_TYPES = ("llama", "mistral", "qwen2", "qwen3", "phi3", "gemma", "gemma2", "olmo", "granite", "smollm3")


def build_onnx(hf_dir: Path, out_dir: Path, quantize: str, *, log_path: Path | None = None,
               calibration: Sequence[Sequence[int]] | None = None, work_dir: Path | None = None,
               progress: Progress | None = None) -> dict[str, Any] | None:
    """Build the ONNX decoder of ``hf_dir`` into ``out_dir`` (which it fills). For ``int4`` with
    ``calibration`` token sequences, GPTQ requantizes the builder's 4-bit graph; the summary of
    what it did is returned (``None`` when the builder's quantization is kept as it is). The
    builder's scratch files go under ``work_dir`` (the system's temporary folder by default)."""
    hf_dir = Path(hf_dir)
    if quantize != "int4" or not calibration:
        _run_builder(hf_dir, Path(out_dir), quantize, log_path, work_dir)
        return None
    from tunery.compiled.gptq import requantize

    say(progress, "building the int4 graph with onnxruntime-genai's model builder")
    _run_builder(hf_dir, Path(out_dir), "gptq", log_path, work_dir)
    return requantize(Path(out_dir), hf_dir, calibration, progress).to_dict()


def builder_refuses(cfg: dict[str, Any]) -> str | None:
    """Why the builder cannot make a faithful graph of the model whose config is ``cfg`` (None
    when it can). Qwen3 with heads wider than hidden size / heads (Qwen3-0.6B: 128 against 64)
    builds, but disagrees with PyTorch even in float32 (78.7% top-1 on the tiny Qwen3; measured).
    The families are tested in tests/models/test_arch_matrix.py."""
    model_type = cfg.get("model_type", "")
    if model_type not in SUPPORTED_TYPES:
        return f"the ONNX builder does not take {model_type or 'this'} models"
    if model_type == "gemma2":
        # measured on the tiny Gemma 2: the graph builds, then every run fails in GroupQueryAttention
        # ("sliding_window_cache: KV cache capacity (0) must be at least local_window_size")
        return "ONNX Runtime cannot run the builder's Gemma 2 graph (its sliding-window attention)"
    head_dim = cfg.get("head_dim")
    if model_type == "qwen3" and head_dim and head_dim * cfg["num_attention_heads"] != cfg["hidden_size"]:
        return "the ONNX builder miscomputes Qwen3 attention whose heads are not hidden size / heads wide"
    return None


def _run_builder(hf_dir: Path, out_dir: Path, quantize: str, log_path: Path | None, work_dir: Path | None) -> None:
    why = builder_refuses(json.loads((hf_dir / "config.json").read_text()))
    if why:
        raise InvalidInput(why, param="format", hint="export to --format hf (or gguf) instead")
    try:
        import onnxruntime_genai  # noqa: F401
    except ImportError as e:
        raise InvalidInput("ONNX export needs onnxruntime-genai", param="format",
                           hint="pip install onnxruntime onnxruntime-genai") from e
    with tempfile.TemporaryDirectory(prefix="tunery-onnx-cache-", dir=work_dir) as cache:
        cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf_dir), "-o", str(out_dir),
               "-p", BUILDER_PRECISION[quantize], "-e", "cpu", "-c", cache]
        if BUILDER_OPTIONS[quantize]:
            cmd += ["--extra_options", *BUILDER_OPTIONS[quantize]]
        # the builder only ever reads the local folder; make sure nothing tries the Hub
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    log = (proc.stdout or "") + (proc.stderr or "")
    if log_path is not None:
        log_path.write_text(log)
    if proc.returncode != 0 or not (out_dir / "model.onnx").exists():
        tail = [line for line in log.strip().splitlines() if line.strip()][-3:]
        raise TuneryError(f"the ONNX model builder failed: {' / '.join(tail) or 'no output'}",
                          code="export_failed", hint="run with TUNERY_DEBUG=1 and see the builder log")
    _finish_config(hf_dir, out_dir)


def _finish_config(hf_dir: Path, out_dir: Path) -> None:
    """Carry over what the builder leaves out: every end-of-turn id (ChatML models end a turn with
    ``<|im_end|>``, which is not always the config's ``eos_token_id``) and the generation config."""
    from tunery.models.loading import stop_token_ids

    stops = stop_token_ids(None, hf_dir)
    cfg_path = out_dir / "genai_config.json"
    cfg = json.loads(cfg_path.read_text())
    if stops:
        cfg["model"]["eos_token_id"] = stops if len(stops) > 1 else stops[0]
    cfg["search"]["do_sample"] = False
    atomic_write_json(cfg_path, cfg)
    gc = hf_dir / "generation_config.json"
    if gc.exists():
        (out_dir / "generation_config.json").write_text(gc.read_text())
    # the tokenizer exactly as the source saved it (the builder rewrites tokenizer_config.json)
    for name in ("chat_template.jinja", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (hf_dir / name).exists():
            (out_dir / name).write_bytes((hf_dir / name).read_bytes())
