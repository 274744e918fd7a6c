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
* ``int4``: 4-bit block-wise weights chosen by ONNX Runtime's k-quant search, with the most
  quantization-sensitive matrices (the LM head, and llama.cpp's "mixed" set of layers) kept at
  8 bits (``algo_config=k_quant_mixed``). Plain round-to-nearest int4 lost ~13% in loss here;
  this recipe loses 4.7% on the base model at about a fifth of the float32 size, but 7.4% on the
  default fine-tune (LoRA on the top ten layers); see benchmarks/RESULTS.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tunery.errors import InvalidInput, TuneryError
from tunery.home import atomic_write_json

BUILDER_PRECISION = {"none": "fp32", "int8": "int8", "int4": "int4"}
BUILDER_OPTIONS: dict[str, list[str]] = {
    "none": [],
    "int8": ["accuracy_level=4"],
    "int4": ["accuracy_level=4", "algo_config=k_quant_mixed"],
}
SUPPORTED_TYPES = ("llama", "mistral", "qwen2", "qwen3", "phi3", "gemma", "gemma2", "olmo", "granite", "smollm3")


def build_onnx(hf_dir: Path, out_dir: Path, quantize: str, *, log_path: Path | None = None) -> Path:
    """Run the model builder on ``hf_dir`` into ``out_dir`` (which it fills)."""
    hf_dir, out_dir = Path(hf_dir), Path(out_dir)
    model_type = json.loads((hf_dir / "config.json").read_text()).get("model_type", "")
    if model_type not in SUPPORTED_TYPES:
        raise InvalidInput(f"the ONNX exporter does not support {model_type!r} models", param="format",
                           hint="export to --format hf instead")
    try:
        import onnxruntime_genai  # noqa: F401
    except ImportError as e:
        raise InvalidInput("ONNX export needs onnxruntime-genai", param="format",
                           hint="pip install onnxruntime onnxruntime-genai") from e
    with tempfile.TemporaryDirectory(prefix="tunery-onnx-cache-") as cache:
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
    return out_dir


def _finish_config(hf_dir: Path, out_dir: Path) -> None:
    """Carry over what the builder leaves out: every end-of-turn id (ChatML models end a turn with
    ``<|im_end|>``, which is not always the config's ``eos_token_id``) and the generation config."""
    from tunery.export.hf_folder import folder_stop_ids

    stops = folder_stop_ids(hf_dir)
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
