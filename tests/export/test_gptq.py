"""GPTQ for the ONNX int4 export: the algorithm beats round-to-nearest where it should, its Hessians
are the layers' X^T X, the packed blocks are exactly what ONNX Runtime's MatMulNBits computes with,
and the export uses it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tunery.compiled.gptq import BLOCK, EIGHT_BIT, BlockQuantized, gptq, pack


def _problem(k: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Correlated inputs (as a layer's are) with a few loud channels, and a weight ``[K, N]``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3000, k)) @ rng.standard_normal((k, k)) / np.sqrt(k)
    x[:, :: max(1, k // 8)] *= 6.0
    w = rng.standard_normal((k, n)) * 0.05
    return x.astype(np.float32), w.astype(np.float32), (x.T @ x).astype(np.float64)


def _output_error(x: np.ndarray, w: np.ndarray, bq: BlockQuantized) -> float:
    """How far the layer's outputs on the inputs ``x`` move: ``|X dW| / |X W|``."""
    return float(np.linalg.norm(x @ (w - bq.dequantize().T)) / np.linalg.norm(x @ w))


@pytest.mark.parametrize("bits", [4, 8])
def test_gptq_moves_the_layer_outputs_less_than_round_to_nearest(bits: int):
    x, w, h = _problem(128, 48)
    ours, rtn = gptq(w, h, bits), gptq(w, None, bits)
    assert _output_error(x, w, ours) < 0.8 * _output_error(x, w, rtn)


def test_gptq_reports_the_output_error_it_made():
    import torch

    from tunery.compiled.gptq import _gptq_batch

    x, w, h = _problem(128, 48)
    q, s, z, loss = _gptq_batch(torch.tensor(w)[None], torch.tensor(h)[None], 4, damp=1e-6)
    bq = BlockQuantized(q[0].T.numpy(), s[0].T.numpy(), z[0].T.numpy(), 4)
    assert bq.dequantize() == pytest.approx(gptq(w, h, 4, damp=1e-6).dequantize())
    # its own sum of squared scaled errors is |X dW|^2 (on the barely damped Hessian)
    assert float(loss.sum()) ** 0.5 == pytest.approx(_output_error(x, w, bq) * np.linalg.norm(x @ w), rel=1e-3)


def test_hessians_are_each_layer_input_x_t_x_over_the_real_tokens(tiny_model_dir, monkeypatch):
    import torch

    from tunery.compiled import gptq as g
    from tunery.compiled.scorers import load_torch

    monkeypatch.setattr(g, "BATCH_TOKENS", 40)  # several padded batches, shared by the workers
    rng = np.random.default_rng(0)
    seqs = [rng.integers(3, 200, size=n).tolist() for n in (19, 7, 12, 5, 16, 9)]
    got = g.calibrate(tiny_model_dir, seqs)

    model = load_torch(tiny_model_dir).model
    inputs: dict[str, list[torch.Tensor]] = {}
    outputs: dict[str, list[torch.Tensor]] = {}
    for name, module in model.named_modules():
        if name.endswith("_proj"):
            def keep(m, args, out, name=name):
                inputs.setdefault(name, []).append(args[0][0])
                outputs.setdefault(name, []).append(out[0])
            module.register_forward_hook(keep)
    with torch.inference_mode():
        for ids in seqs:  # one at a time: no padding
            model(input_ids=torch.tensor([ids]))
    layers = model.config.num_hidden_layers
    assert len(got) == layers * 8  # q, k, v, o, gate, up, down and the fused qkv
    for i in range(layers):
        pairs = [(f"/model/layers.{i}/attn/{p}_proj/MatMul", f"model.layers.{i}.self_attn.{p}_proj") for p in "qkvo"]
        pairs += [(f"/model/layers.{i}/mlp/{p}_proj/MatMul", f"model.layers.{i}.mlp.{p}_proj")
                  for p in ("gate", "up", "down")]
        for node, module in pairs:
            x = torch.cat(inputs[module]).double()
            np.testing.assert_allclose(got[node].hessian.numpy(), (x.T @ x).numpy(), rtol=1e-4, atol=1e-4)
            assert got[node].hessian.dtype == torch.float64
            weight = dict(model.named_modules())[module].weight
            assert torch.equal(got[node].weight, weight)
            y = torch.cat(outputs[module]).double()
            assert got[node].output_sq == pytest.approx(float(y.square().sum()), rel=1e-4)
        qkv = got[f"/model/layers.{i}/attn/qkv_proj/MatMul"]  # the builder's fused node: q|k|v rows
        attn = [got[f"/model/layers.{i}/attn/{p}_proj/MatMul"] for p in "qkv"]
        assert torch.equal(qkv.weight, torch.cat([a.weight for a in attn]))
        assert all(a.hessian is qkv.hessian for a in attn)
        assert got[f"/model/layers.{i}/mlp/gate_proj/MatMul"].hessian is \
            got[f"/model/layers.{i}/mlp/up_proj/MatMul"].hessian


def test_levels_scales_and_zero_points_are_on_the_matmulnbits_grid():
    _, w, h = _problem(96, 16)
    for bits in (4, 8):
        bq = gptq(w, h, bits)
        assert bq.q.dtype == np.uint8 and bq.q.max() <= 2**bits - 1
        assert bq.scales.shape == bq.zero_points.shape == (16, 96 // BLOCK)
        assert (bq.scales > 0).all() and bq.zero_points.max() <= 2**bits - 1
        # round-to-nearest (no Hessian) lands within half a step of every weight it did not clip
        rtn = gptq(w, None, bits)
        step = np.repeat(rtn.scales, BLOCK, axis=1)
        assert (np.abs(rtn.dequantize() - w.T) <= 0.5 * step + 1e-6).mean() > 0.95


def test_a_bad_input_dimension_is_refused():
    with pytest.raises(ValueError, match="multiple of 32"):
        gptq(np.zeros((40, 8), np.float32), None, 4)


def _run_matmulnbits(bq: BlockQuantized, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    n, k = bq.q.shape
    b, scales, zp = pack(bq)
    node = helper.make_node("MatMulNBits", ["A", "B", "S", "Z"], ["Y"], domain="com.microsoft", K=k, N=n,
                            bits=bq.bits, block_size=BLOCK, accuracy_level=0)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("A", TensorProto.FLOAT, [None, k])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, n])],
                              [numpy_helper.from_array(b, "B"), numpy_helper.from_array(scales, "S"),
                               numpy_helper.from_array(zp, "Z")])
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 21),
                                                                   helper.make_opsetid("com.microsoft", 1)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"A": x})[0]


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("k", [96, 128])  # an odd number of blocks pads the packed zero points
def test_packed_blocks_compute_what_onnx_runtime_computes(bits: int, k: int):
    x, w, h = _problem(k, 24, seed=k)
    bq = gptq(w, h, bits)
    got = _run_matmulnbits(bq, x[:5])
    np.testing.assert_allclose(got, x[:5] @ bq.dequantize().T, rtol=1e-4, atol=1e-5)


def test_attention_input_projections_are_the_8_bit_ones():
    for name in ("/model/layers.0/attn/qkv_proj/MatMul", "/model/layers.3/attn/v_proj/MatMul",
                 "model.layers.1.self_attn.q_proj", "/model/layers.2/attn/k_proj/MatMul"):
        assert EIGHT_BIT.search(name), name
    for name in ("/model/layers.0/attn/o_proj/MatMul", "/model/layers.0/mlp/up_proj/MatMul",
                 "/model/layers.0/mlp/gate_proj/MatMul", "/model/layers.0/mlp/down_proj/MatMul", "/lm_head/MatMul"):
        assert not EIGHT_BIT.search(name), name


def test_the_int4_export_is_gptq_calibrated_and_says_so(exports):
    import onnx

    result = exports[("onnx", "int4")]
    q = result.manifest["quantization"]
    assert q["method"] == "gptq" and q["calibration_source"] == "bundled travel chats"
    assert q["calibration_sequences"] > 0 and q["matrices_4bit"] > 0 and q["matrices_8bit"] > 0
    graph = onnx.load(str(result.path / "model.onnx"), load_external_data=False).graph
    bits = {n.name: next(a.i for a in n.attribute if a.name == "bits") for n in graph.node if n.op_type == "MatMulNBits"}
    gptq_nodes = {name: b for name, b in bits.items() if name not in q["kept_from_builder"]}
    # every matrix is GPTQ's but the LM head, whose blocks the embedding lookup shares (tied):
    # it keeps the builder's 8 bits, one copy for both (each fused pair of 4-bit matrices is one node)
    head = next(n for n in graph.node if n.name.startswith("/lm_head/") and n.op_type == "MatMulNBits")
    assert q["kept_from_builder"] == [head.name] and bits[head.name] == 8
    lookup = next(n for n in graph.node if n.op_type == "GatherBlockQuantized")
    reshaped = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Reshape"}
    assert head.input[1] in (lookup.input[0], reshaped.get(lookup.input[0]))
    assert sum(b == 4 for b in gptq_nodes.values()) + q["fused_groups"] == q["matrices_4bit"]
    assert sum(b == 8 for b in gptq_nodes.values()) == q["matrices_8bit"]
    assert all((b == 8) == bool(EIGHT_BIT.search(name)) for name, b in gptq_nodes.items())
    # gate and up read the same input: one node, split back into the two names the graph uses
    fused = [n for n in graph.node if n.op_type == "MatMulNBits" and "gate_proj+up_proj" in n.name]
    assert len(fused) == q["fused_groups"] > 0
    splits = [n for n in graph.node if n.op_type == "Split" and n.input[0] == fused[0].output[0]]
    assert len(splits) == 1 and len(splits[0].output) == 2
    # the file on disk is the manifest's
    assert json.loads((result.path / "tunery-export.json").read_text())["quantization"] == q


def test_calibration_file_is_checked_and_only_for_onnx_int4(tiny_ft, tmp_path):
    from tunery.errors import InvalidInput
    from tunery.export import export_model

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\nnot json\n')
    with pytest.raises(InvalidInput, match=r"invalid calibration file .*bad\.jsonl") as e:
        export_model(tiny_ft.id, "onnx", tmp_path / "out", quantize="int4", calibration=bad)
    assert "line 2" in e.value.message
    with pytest.raises(InvalidInput, match="only applies to --format onnx --quantize int4"):
        export_model(tiny_ft.id, "gguf", tmp_path / "out", quantize="q8_0", calibration=bad)
    assert not (tmp_path / "out").exists()
