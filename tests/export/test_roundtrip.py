"""Every format round-trips: the export is loaded back, the same prompts go through it and the
source, and the agreement is within the format's tolerance."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tests.export.conftest import EXPORTS, FT_ID


@pytest.mark.parametrize(("fmt", "quant"), EXPORTS)
def test_export_round_trips_with_agreement(exports, fmt: str, quant: str):
    result = exports[(fmt, quant)]
    report = result.report
    assert report.passed, report.failures
    assert report.prompts == 3 and report.scored_tokens > 20
    manifest = json.loads((result.path / "tunery-export.json").read_text())
    assert manifest["format"] == fmt and manifest["quantize"] == quant and manifest["source_model"] == FT_ID
    assert manifest["verification"]["passed"] is True
    assert set(manifest["files"]) <= {p.name for p in result.path.iterdir()}
    if (fmt, quant) in (("hf", "none"), ("onnx", "none"), ("gguf", "f16")):
        assert report.greedy_agreement >= 0.9 and report.top1_agreement >= 0.95
        assert abs(report.loss_delta) < 0.01


def test_quantized_exports_are_smaller(exports):
    size = {k: r.size_bytes for k, r in exports.items()}
    assert size[("onnx", "int4")] < size[("onnx", "int8")] < size[("onnx", "none")]
    assert size[("gguf", "q4_1")] < size[("gguf", "q8_0")] < size[("gguf", "f16")]


def test_hf_export_is_a_plain_merged_folder(exports, tiny_model_dir):
    """The LoRA is merged: the folder loads with plain transformers (no PEFT) and its weights
    differ from the base's."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = exports[("hf", "none")].path
    assert not (out / "adapter_config.json").exists()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json"):
        assert (out / name).exists(), name
    tok = AutoTokenizer.from_pretrained(out)
    assert "<|im_start|>" in tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    merged = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    q_merged = merged.model.layers[0].self_attn.q_proj.weight
    q_base = base.model.layers[0].self_attn.q_proj.weight
    assert not torch.allclose(q_merged, q_base)


def test_onnx_export_has_a_kv_cache_decoder(exports):
    import onnx

    out = exports[("onnx", "int4")].path
    graph = onnx.load(str(out / "model.onnx"), load_external_data=False).graph
    inputs = {i.name for i in graph.input}
    assert {"input_ids", "attention_mask", "past_key_values.0.key"} <= inputs
    assert "present.0.key" in {o.name for o in graph.output}
    assert "MatMulNBits" in {n.op_type for n in graph.node}  # block-wise int4 weights
    genai = json.loads((out / "genai_config.json").read_text())
    assert genai["model"]["eos_token_id"] in (2, [2])  # <|im_end|> of the ChatML template


def test_gguf_export_metadata_and_modelfile(exports):
    import gguf

    result = exports[("gguf", "q4_1")]
    path = result.main_file
    assert path.suffix == ".gguf"
    reader = gguf.GGUFReader(path)
    fields = reader.fields
    assert fields["general.architecture"].contents() == "llama"
    assert fields["tokenizer.ggml.model"].contents() == "gpt2"
    assert "<|im_start|>" in fields["tokenizer.chat_template"].contents()
    assert fields["tokenizer.ggml.eos_token_id"].contents() == 2
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["blk.0.attn_q.weight"] == "Q4_1" and types["token_embd.weight"] == "Q8_0"
    assert types["blk.0.attn_norm.weight"] == "F32"
    assert "output.weight" not in types  # tied to the embedding
    modelfile = (result.path / "Modelfile").read_text()
    assert modelfile.startswith(f"FROM ./{path.name}")
    assert 'PARAMETER stop "<|im_end|>"' in modelfile and "TEMPLATE" in modelfile


def test_gguf_dequantizes_close_to_the_source(exports):
    """transformers reads our q8_0 file back into weights close to the merged ones (the q/k
    permutation undone)."""
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(exports[("hf", "none")].path)
    r = exports[("gguf", "q8_0")]
    back = AutoModelForCausalLM.from_pretrained(r.path, gguf_file=r.main_file.name)
    for name in ("model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight",
                 "model.layers.1.mlp.down_proj.weight"):
        a = hf.state_dict()[name].numpy()
        b = back.state_dict()[name].float().numpy()
        assert np.abs(a - b).max() < 0.02 * np.abs(a).max() + 1e-3, name
