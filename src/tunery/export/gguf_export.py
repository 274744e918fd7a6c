"""The ``gguf`` format: one GGUF file that llama.cpp and Ollama load, written with the ``gguf``
package's writer and block quantizers (``gguf.quants``), from the merged Hugging Face folder.

What llama.cpp expects, and we therefore do:

* the architecture's tensor names (``gguf.get_tensor_name_map``): ``llama`` for Llama and Mistral
  models, ``qwen2`` and ``qwen3`` for those (:data:`ARCHS`; others get a clear error);
* for ``llama``, the query and key projections permuted from Hugging Face's rotate-half layout into
  the interleaved rotary layout (the inverse of transformers' ``reverse_permute``, as in llama.cpp's
  ``convert_hf_to_gguf.py``); Qwen's rotary layout is llama.cpp's NEOX one, so its weights go as
  they are (the query/key/value biases of Qwen2 and the query/key norms of Qwen3 included);
* the tokenizer as ``gpt2`` BPE: every token by id, its type (special tokens are control tokens),
  the merges, the bos/eos/unk/pad ids, and the chat template in ``tokenizer.chat_template``;
* 1-D tensors (norms) kept in float32, and for the 4-bit types the token embedding kept at 8 bits
  (``Q8_0``): it doubles as the output layer of tied models and is the most sensitive matrix, which
  is also what llama.cpp's own quantizer does.

The 4-bit types are mixed, as llama.cpp's ``Q4_K_M`` is: each matrix is quantized, and those
whose 4-bit rounding error stands out (more than twice the median relative error) stay at
``Q8_0``, worst first, up to a third of the parameters. Why: SmolLM2 ships as a ``Q4_1`` GGUF, so
its weights already sit on the 4-bit grid and round-trip exactly, while the layers a fine-tune
changed no longer do; quantizing those to 4 bits threw the merged fine-tune's validation loss up
by 20%. With the mixed rule the unchanged layers stay 4-bit (losslessly) and the changed ones
8-bit, and any model's outlier matrices get the same care.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tunery.errors import InvalidInput

GGUF_TYPES = {"f16": "F16", "q8_0": "Q8_0", "q4_0": "Q4_0", "q4_1": "Q4_1"}
FILE_TYPES = {"f16": "MOSTLY_F16", "q8_0": "MOSTLY_Q8_0", "q4_0": "MOSTLY_Q4_0", "q4_1": "MOSTLY_Q4_1"}


ARCHS = {"llama": "LLAMA", "mistral": "LLAMA", "qwen2": "QWEN2", "qwen3": "QWEN3"}
"""Hugging Face ``model_type`` -> the llama.cpp architecture written (``gguf.MODEL_ARCH`` name)."""


def gguf_filename(quantize: str) -> str:
    return f"model-{quantize}.gguf"


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Hugging Face rotate-half layout -> GGUF/llama.cpp interleaved layout, per head."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape))


def write_gguf(hf_dir: Path, out_path: Path, quantize: str, *, name: str = "") -> Path:
    """Write ``hf_dir`` (a merged folder of an architecture in :data:`ARCHS`) as one GGUF file at
    ``out_path``."""
    import gguf
    from safetensors.numpy import load_file

    hf_dir, out_path = Path(hf_dir), Path(out_path)
    cfg = json.loads((hf_dir / "config.json").read_text())
    if cfg.get("model_type") not in ARCHS:
        raise InvalidInput(f"GGUF export supports {', '.join(ARCHS)} models, not {cfg.get('model_type')!r}",
                           param="format", hint="export to --format onnx or hf instead")
    arch = getattr(gguf.MODEL_ARCH, ARCHS[cfg["model_type"]])
    permute = arch == gguf.MODEL_ARCH.LLAMA
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    if rope.get("rope_type", "default") not in ("default", None):
        raise InvalidInput(f"GGUF export does not handle {rope['rope_type']!r} rotary scaling yet", param="format")

    n_layer, n_head = int(cfg["num_hidden_layers"]), int(cfg["num_attention_heads"])
    n_kv = int(cfg.get("num_key_value_heads") or n_head)
    hidden = int(cfg["hidden_size"])
    head_dim = int(cfg.get("head_dim") or hidden // n_head)
    tensors: dict[str, np.ndarray] = {}
    for f in sorted(hf_dir.glob("*.safetensors")):
        tensors.update(load_file(f))

    w = gguf.GGUFWriter(path=None, arch=gguf.MODEL_ARCH_NAMES[arch])
    w.add_name(name or cfg.get("_name_or_path") or hf_dir.name)
    w.add_context_length(int(cfg.get("max_position_embeddings") or 2048))
    w.add_embedding_length(hidden)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(int(cfg["intermediate_size"]))
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_dimension_count(head_dim)
    if cfg.get("head_dim"):  # Qwen3's heads need not be hidden / heads wide; readers default otherwise
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    w.add_rope_freq_base(float(rope.get("rope_theta") or cfg.get("rope_theta") or 10000.0))
    w.add_layer_norm_rms_eps(float(cfg.get("rms_norm_eps") or 1e-5))
    w.add_vocab_size(int(cfg["vocab_size"]))
    w.add_file_type(getattr(gguf.LlamaFileType, FILE_TYPES[quantize]))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_tokenizer(w, hf_dir, int(cfg["vocab_size"]), cfg)

    names = gguf.get_tensor_name_map(arch, n_layer)
    tied = bool(cfg.get("tie_word_embeddings"))
    prepared: dict[str, np.ndarray] = {}
    for hf_name, data in tensors.items():
        if hf_name == "lm_head.weight" and tied:
            continue
        target = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise InvalidInput(f"no GGUF name for tensor {hf_name!r}", param="format")
        data = data.astype(np.float32)
        if permute and hf_name.endswith("q_proj.weight"):
            data = permute_qk(data, n_head)
        elif permute and hf_name.endswith("k_proj.weight"):
            data = permute_qk(data, n_kv)
        prepared[target] = data
    for target, (qtype, raw) in choose_types(prepared, quantize).items():
        if raw is None:
            w.add_tensor(target, prepared[target].astype(np.float16 if qtype.name == "F16" else np.float32))
        else:
            w.add_tensor(target, raw, raw_dtype=qtype)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    w.path = out_path
    w.write_header_to_file(path=out_path)
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out_path


MIXED_ERROR_RATIO = 2.0
"""A 4-bit matrix stays 8-bit when its relative rounding error exceeds this multiple of the median."""
MIXED_MAX_FRACTION = 1 / 3
"""At most this fraction of the quantized parameters is kept at 8 bits."""


def choose_types(tensors: dict[str, np.ndarray], quantize: str) -> dict[str, tuple[Any, np.ndarray | None]]:
    """Each tensor's GGML type and quantized bytes (None: written as float, F32 or F16)."""
    import gguf
    from gguf import quants

    base = gguf.GGMLQuantizationType[GGUF_TYPES[quantize]]
    q8 = gguf.GGMLQuantizationType.Q8_0
    out: dict[str, tuple[Any, np.ndarray | None]] = {}
    errors: dict[str, float] = {}
    for name, data in tensors.items():
        qtype = q8 if quantize.startswith("q4") and name == "token_embd.weight" else base
        if data.ndim < 2:
            out[name] = (gguf.GGMLQuantizationType.F32, None)
        elif qtype == gguf.GGMLQuantizationType.F16 or data.shape[-1] % gguf.GGML_QUANT_SIZES[qtype][0]:
            out[name] = (gguf.GGMLQuantizationType.F16, None)  # rows that do not fill whole blocks
        else:
            raw = quants.quantize(data, qtype)
            out[name] = (qtype, raw)
            if qtype != q8 and quantize.startswith("q4"):
                diff = quants.dequantize(raw, qtype).reshape(data.shape) - data
                errors[name] = float(np.linalg.norm(diff) / max(float(np.linalg.norm(data)), 1e-12))
    if errors:
        median = float(np.median(list(errors.values())))
        budget = MIXED_MAX_FRACTION * sum(tensors[n].size for n in errors)
        for name in sorted(errors, key=errors.get, reverse=True):
            if errors[name] <= MIXED_ERROR_RATIO * median or tensors[name].size > budget:
                break
            budget -= tensors[name].size
            out[name] = (q8, quants.quantize(tensors[name], q8))
    return out


def _pre_tokenizer(tok_json: dict[str, Any], cfg: dict[str, Any]) -> str:
    """llama.cpp's name for the pre-tokenizer (how text is split before BPE)."""
    origin = str(cfg.get("_name_or_path") or cfg.get("_model_name_or_path") or "").lower()
    if "smollm" in origin:
        return "smollm"
    pre = tok_json.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"
    return "default"


def _add_tokenizer(w: Any, hf_dir: Path, vocab_size: int, cfg: dict[str, Any]) -> None:
    import gguf

    tok_path = hf_dir / "tokenizer.json"
    if not tok_path.exists():
        raise InvalidInput(f"{hf_dir} has no tokenizer.json; GGUF export needs a fast BPE tokenizer",
                           param="format")
    tj = json.loads(tok_path.read_text())
    model = tj.get("model") or {}
    if model.get("type") != "BPE":
        raise InvalidInput(f"GGUF export supports BPE tokenizers, not {model.get('type')!r}", param="format")
    vocab: dict[str, int] = dict(model["vocab"])
    added = {t["content"]: t for t in tj.get("added_tokens", [])}
    for content, t in added.items():
        vocab[content] = t["id"]
    by_id = {i: s for s, i in vocab.items()}
    tokens, types = [], []
    for i in range(vocab_size):
        s = by_id.get(i)
        if s is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif s in added:
            tokens.append(s)
            types.append(gguf.TokenType.CONTROL if added[s].get("special") else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(s)
            types.append(gguf.TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(_pre_tokenizer(tj, cfg))
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)

    tcfg_path = hf_dir / "tokenizer_config.json"
    tcfg = json.loads(tcfg_path.read_text()) if tcfg_path.exists() else {}

    def tid(key: str) -> int | None:
        v = tcfg.get(key)
        v = v.get("content") if isinstance(v, dict) else v
        return vocab.get(v) if isinstance(v, str) else None

    for key, add in (("bos_token", w.add_bos_token_id), ("eos_token", w.add_eos_token_id),
                     ("unk_token", w.add_unk_token_id), ("pad_token", w.add_pad_token_id)):
        value = tid(key)
        if value is None and key in ("bos_token", "eos_token") and cfg.get(f"{key}_id") is not None:
            value = int(cfg[f"{key}_id"])
        if value is not None:
            add(value)
    w.add_add_bos_token(False)  # the chat template writes every special token itself
    template = tcfg.get("chat_template")
    if not template and (hf_dir / "chat_template.jinja").exists():
        template = (hf_dir / "chat_template.jinja").read_text()
    if template:
        w.add_chat_template(template)
