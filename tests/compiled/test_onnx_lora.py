"""LoRA adapters over one shared ONNX graph (tunery.compiled.lora), checked against PEFT in PyTorch
on the tiny model: the idle graph is exactly the base graph, each adapter gives its own PEFT
model's logits and greedy tokens, in ONNX Runtime and in onnxruntime-genai."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from support_adapters import make_adapter
from tunery.compiled.lora import adapter_layers, add_lora_inputs, write_adapter
from tunery.errors import InvalidInput

pytest.importorskip("onnxruntime_genai")

PROMPT = [1, 5, 9, 33, 100, 7, 8, 200, 42, 300]
PROJECTIONS = ("q", "k", "v", "o", "gate", "up", "down")
NEW = 16


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Path]:
    """The tiny model's float32 graph, a copy with LoRA inputs, and three PEFT adapters (two seeds
    over every layer, one over layer 1 only) converted for it."""
    from tunery.compiled.onnx_build import build_onnx

    root = tmp_path_factory.mktemp("onnx-lora")
    build_onnx(tiny_model_dir, root / "base", "none")
    shutil.copytree(root / "base", root / "lora")
    add_lora_inputs(root / "lora")
    out = {"base": root / "base", "lora": root / "lora"}
    for name, kw in {"x": {"seed": 0}, "y": {"seed": 1}, "sub": {"seed": 2, "layers": [1]}}.items():
        out[f"peft_{name}"] = make_adapter(tiny_model_dir, root / f"peft-{name}", **kw)
        out[name] = root / f"{name}.onnx_adapter"
        write_adapter(out[f"peft_{name}"], root / "lora", out[name])
    return out


def _ort_logits(folder: Path, ids: list[int], adapter: Path | None = None) -> np.ndarray:
    return _ort_batch(folder, [ids], adapter)[0]


def _ort_batch(folder: Path, rows: list[list[int]], adapter: Path | None = None) -> np.ndarray:
    """Logits of a batch of prompts of one length, no cache: ``[rows, positions, vocabulary]``."""
    import onnxruntime as ort

    from tunery.runtime import ort_session

    sess = ort_session(folder / "model.onnx", threads=1)
    head = json.loads((folder / "genai_config.json").read_text())["model"]["decoder"]["head_size"]
    ids = np.array(rows, np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones(ids.shape, np.int64)}
    for i in sess.get_inputs():
        if i.name.startswith("past_key_values."):
            feeds[i.name] = np.zeros((len(rows), i.shape[1], 0, head), np.float32)
    options = ort.RunOptions()
    if adapter is not None:
        lora = ort.LoraAdapter()
        lora.Load(str(adapter))
        options.add_active_adapter(lora)
    return sess.run(["logits"], feeds, run_options=options)[0]


def _peft(model_dir: Path, adapter_dir: Path | None):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    return (PeftModel.from_pretrained(model, str(adapter_dir)) if adapter_dir else model).eval()


def _torch_logits(model, ids: list[int]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def _torch_greedy(model, ids: list[int]) -> list[int]:
    import torch

    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False)
    return out[0, len(ids):].tolist()


def _generator(model, adapters=None, name: str | None = None):
    import onnxruntime_genai as og

    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(PROMPT) + NEW, min_length=len(PROMPT) + NEW, do_sample=False)
    gen = og.Generator(model, params)
    if adapters is not None:
        gen.set_active_adapter(adapters, name)
    gen.append_tokens(np.array(PROMPT, np.int32))
    return gen


def _og_greedy(gen) -> tuple[list[int], np.ndarray]:
    """Greedy tokens and each step's last-position logits."""
    tokens, logits = [], []
    while not gen.is_done():
        logits.append(np.asarray(gen.get_logits(), np.float32).reshape(-1))
        gen.generate_next_token()
        tokens.append(int(gen.get_next_tokens()[0]))
    return tokens, np.stack(logits)


def test_lora_inputs_are_named_per_projection_and_added_once(graphs: dict[str, Path]) -> None:
    import onnx

    names = add_lora_inputs(graphs["lora"])  # the second call: nothing to do
    # one pair per PEFT module, also for q/k/v, which the builder packs into one node
    assert names == [f"lora.layers.{n}.{p}.{ab}" for n in (0, 1) for p in PROJECTIONS for ab in ("A", "B")]
    model = onnx.load(str(graphs["lora"] / "model.onnx"), load_external_data=False)
    inputs = {i.name for i in model.graph.input}
    inits = {t.name: tuple(t.dims) for t in model.graph.initializer}
    assert set(names) <= inputs
    assert inits["lora.layers.0.q.A"] == (64, 0) and inits["lora.layers.0.q.B"] == (0, 64)
    assert inits["lora.layers.0.k.B"] == inits["lora.layers.0.v.B"] == (0, 32)  # the tiny model's 2 KV heads
    assert sum(n.op_type == "Add" and n.name.endswith("/lora/Add") for n in model.graph.node) == 10
    assert sum(n.op_type == "Concat" and n.name.endswith("/lora/Concat") for n in model.graph.node) == 2
    # the extra row: one Pad per projection input (q/k/v share one node, gate and up one input), one
    # Slice per projection node
    assert sum(n.op_type == "Pad" for n in model.graph.node) == 8
    assert sum(n.op_type == "Slice" and n.name.endswith("/lora/Slice_y") for n in model.graph.node) == 10
    # nodes in topological order (ONNX Runtime would sort them, onnx tools may not): each reads only
    # what an earlier node made (a shared Pad placed after its second reader would fail here)
    made = {i.name for i in model.graph.input} | set(inits)
    for node in model.graph.node:
        assert all(not x or x in made for x in node.input), node.name
        made.update(node.output)
    assert (graphs["lora"] / "model.onnx.data").read_bytes() == (graphs["base"] / "model.onnx.data").read_bytes()


def test_no_active_adapter_is_exactly_the_base_graph(graphs: dict[str, Path]) -> None:
    from tunery.runtime import genai_model

    base = _ort_logits(graphs["base"], PROMPT)
    assert np.array_equal(_ort_logits(graphs["lora"], PROMPT), base)
    base_tokens, base_steps = _og_greedy(_generator(genai_model(graphs["base"], 1)))
    tokens, steps = _og_greedy(_generator(genai_model(graphs["lora"], 1)))
    assert tokens == base_tokens
    assert np.array_equal(steps, base_steps)


@pytest.mark.parametrize("name", ["x", "sub"])
def test_active_adapter_matches_peft(graphs: dict[str, Path], tiny_model_dir: Path, name: str) -> None:
    import onnxruntime_genai as og

    from tunery.runtime import genai_model

    peft = _peft(tiny_model_dir, graphs[f"peft_{name}"])
    ref = _torch_logits(peft, PROMPT)
    assert np.abs(ref - _ort_logits(graphs["base"], PROMPT)).max() > 0.1  # the adapter changes the answer
    np.testing.assert_allclose(_ort_logits(graphs["lora"], PROMPT, graphs[name]), ref, atol=1e-3)
    model = genai_model(graphs["lora"], 1)
    adapters = og.Adapters(model)
    adapters.load(str(graphs[name]), name)
    tokens, steps = _og_greedy(_generator(model, adapters, name))
    assert tokens == _torch_greedy(peft, PROMPT)
    np.testing.assert_allclose(steps, _torch_logits(peft, PROMPT + tokens)[len(PROMPT) - 1:-1], atol=1e-3)


def test_a_row_decodes_the_same_alone_as_in_a_batch(graphs: dict[str, Path]) -> None:
    """One token per row, as in a decode step: alone, the side path's MatMuls would see one row, for
    which ONNX Runtime takes another float kernel than for several (sums differing in the last bits),
    so an adapter's answer would change with its batch. The extra row the graph adds prevents it."""
    rows = [[5], [9], [33], [100]]
    batch = _ort_batch(graphs["lora"], rows, graphs["x"])
    for row, logits in zip(rows, batch, strict=True):
        assert np.array_equal(_ort_batch(graphs["lora"], [row], graphs["x"])[0], logits)
    assert np.array_equal(_ort_batch(graphs["lora"], rows[:2], graphs["x"]), batch[:2])


def test_lora_inputs_on_some_layers_only(graphs: dict[str, Path], tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(graphs["base"], tmp_path / "layer1")
    names = add_lora_inputs(folder, layers=[1])
    assert names == [f"lora.layers.1.{p}.{ab}" for p in PROJECTIONS for ab in ("A", "B")]
    with pytest.raises(InvalidInput, match=r"not for \[0\]"):
        add_lora_inputs(folder, layers=[0, 1])
    write_adapter(graphs["peft_sub"], folder, tmp_path / "sub.onnx_adapter")
    ref = _torch_logits(_peft(tiny_model_dir, graphs["peft_sub"]), PROMPT)
    np.testing.assert_allclose(_ort_logits(folder, PROMPT, tmp_path / "sub.onnx_adapter"), ref, atol=1e-3)
    with pytest.raises(InvalidInput, match=r"no LoRA input for the adapter's layers\.0\.down_proj"):
        write_adapter(graphs["peft_x"], folder, tmp_path / "x.onnx_adapter")
    # the same adapter over the copy with side paths everywhere: the idle ones add exact zeros
    assert np.array_equal(_ort_logits(folder, PROMPT, tmp_path / "sub.onnx_adapter"),
                          _ort_logits(graphs["lora"], PROMPT, graphs["sub"]))


def test_the_layers_an_adapter_adapts_are_read_from_its_weights_names(graphs: dict[str, Path],
                                                                      tmp_path: Path) -> None:
    assert adapter_layers(graphs["peft_sub"]) == {1}
    assert adapter_layers(graphs["peft_x"]) == {0, 1}
    assert adapter_layers(tmp_path) is None  # no weights to read: the caller takes it as every layer
    (tmp_path / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    assert adapter_layers(tmp_path) is None  # safetensors' own error, not a crash


def test_adapter_summary_covers_only_the_adapted_layers(graphs: dict[str, Path], tmp_path: Path) -> None:
    summary = write_adapter(graphs["peft_sub"], graphs["lora"], tmp_path / "sub.onnx_adapter")
    assert summary == {"parameters": 14, "rank": 4, "layers": [1],
                       "bytes": (tmp_path / "sub.onnx_adapter").stat().st_size}
    assert write_adapter(graphs["peft_x"], graphs["lora"], tmp_path / "x.onnx_adapter")["layers"] == [0, 1]


def test_rslora_scaling(graphs: dict[str, Path], tiny_model_dir: Path, tmp_path: Path) -> None:
    peft_dir = shutil.copytree(graphs["peft_x"], tmp_path / "rslora")
    config = json.loads((peft_dir / "adapter_config.json").read_text())
    (peft_dir / "adapter_config.json").write_text(json.dumps({**config, "use_rslora": True}))
    write_adapter(peft_dir, graphs["lora"], tmp_path / "rslora.onnx_adapter")
    ref = _torch_logits(_peft(tiny_model_dir, peft_dir), PROMPT)
    assert np.abs(ref - _torch_logits(_peft(tiny_model_dir, graphs["peft_x"]), PROMPT)).max() > 0.01
    np.testing.assert_allclose(_ort_logits(graphs["lora"], PROMPT, tmp_path / "rslora.onnx_adapter"), ref, atol=1e-3)


@pytest.mark.filterwarnings("ignore:Found missing adapter keys:UserWarning")  # the test removes them
def test_a_fused_projection_missing_a_module_gets_zeros_for_it(graphs: dict[str, Path], tiny_model_dir: Path,
                                                               tmp_path: Path) -> None:
    """An adapter without k_proj (and up_proj): k, inside the packed q/k/v node, and up get no
    parameter, so the graph's empty defaults apply (an exact zero). PEFT, missing those weights,
    keeps their B at its zero init, so its logits are the reference."""
    from safetensors.torch import load_file, save_file

    peft_dir = shutil.copytree(graphs["peft_x"], tmp_path / "no-k")
    weights = load_file(str(peft_dir / "adapter_model.safetensors"))
    save_file({k: v for k, v in weights.items() if ".k_proj." not in k and ".up_proj." not in k},
              str(peft_dir / "adapter_model.safetensors"))
    summary = write_adapter(peft_dir, graphs["lora"], tmp_path / "no-k.onnx_adapter")
    assert summary["parameters"] == 20  # q, v, o, gate, down of two layers, each an A and a B
    ref = _torch_logits(_peft(tiny_model_dir, peft_dir), PROMPT)
    assert np.abs(ref - _torch_logits(_peft(tiny_model_dir, graphs["peft_x"]), PROMPT)).max() > 0.01
    np.testing.assert_allclose(_ort_logits(graphs["lora"], PROMPT, tmp_path / "no-k.onnx_adapter"), ref, atol=1e-3)


def test_two_adapters_serve_two_generators_over_one_model(graphs: dict[str, Path], tiny_model_dir: Path) -> None:
    import onnxruntime_genai as og

    from tunery.runtime import genai_model

    model = genai_model(graphs["lora"], 1)
    adapters = og.Adapters(model)
    adapters.load(str(graphs["x"]), "x")
    adapters.load(str(graphs["y"]), "y")
    gens = {name: _generator(model, adapters, name) for name in ("x", "y")}
    tokens: dict[str, list[int]] = {"x": [], "y": []}
    logits: dict[str, list[np.ndarray]] = {"x": [], "y": []}
    while not all(g.is_done() for g in gens.values()):  # the two decodes interleave step by step
        for name, gen in gens.items():
            logits[name].append(np.asarray(gen.get_logits(), np.float32).reshape(-1))
            gen.generate_next_token()
            tokens[name].append(int(gen.get_next_tokens()[0]))
    for name in ("x", "y"):
        ref = _torch_logits(_peft(tiny_model_dir, graphs[f"peft_{name}"]), PROMPT + tokens[name])
        np.testing.assert_allclose(np.stack(logits[name]), ref[len(PROMPT) - 1:-1], atol=1e-3)
    assert not np.allclose(np.stack(logits["x"]), np.stack(logits["y"]), atol=0.1)
    with pytest.raises(RuntimeError, match="still in use: x"):
        adapters.unload("x")
    del gens
    adapters.unload("x")
    with pytest.raises(RuntimeError, match="not found: x"):
        _generator(model, adapters, "x")
    y_again, _ = _og_greedy(_generator(model, adapters, "y"))
    assert y_again == tokens["y"]


@pytest.mark.parametrize("quantize", ["int8", "int4"])
def test_quantized_graph_with_adapter(graphs: dict[str, Path], tiny_model_dir: Path, tmp_path: Path,
                                      quantize: str) -> None:
    """int8: the builder's graph; int4: GPTQ's, whose fused gate+up node takes one A and B. The
    base weights are rounded, so logits match PEFT only to within the quantization's own error."""
    import onnxruntime_genai as og

    from tunery.compiled.onnx_build import build_onnx
    from tunery.runtime import genai_model

    folder = tmp_path / quantize
    build_onnx(tiny_model_dir, folder, quantize, calibration=[PROMPT * 6] * 4 if quantize == "int4" else None)
    base = _ort_logits(folder, PROMPT)
    names = add_lora_inputs(folder)
    # int4 fuses gate and up into one node; each still has its own pair
    assert "lora.layers.0.gate.A" in names and "lora.layers.0.up.B" in names
    assert np.array_equal(_ort_logits(folder, PROMPT), base)
    write_adapter(graphs["peft_x"], folder, tmp_path / "x.onnx_adapter")
    peft = _peft(tiny_model_dir, graphs["peft_x"])
    ref = _torch_logits(peft, PROMPT)
    # measured: int8 0.006 (its base graph alone is 0.007 off PyTorch's), int4 0.03 (0.01)
    np.testing.assert_allclose(_ort_logits(folder, PROMPT, tmp_path / "x.onnx_adapter"), ref,
                               atol={"int8": 0.02, "int4": 0.1}[quantize])
    model = genai_model(folder, 1)
    adapters = og.Adapters(model)
    adapters.load(str(tmp_path / "x.onnx_adapter"), "x")
    tokens, _ = _og_greedy(_generator(model, adapters, "x"))
    assert tokens[:8] == _torch_greedy(peft, PROMPT)[:8]


@pytest.mark.parametrize(("change", "message"), [
    ({"use_dora": True}, "DoRA"),
    ({"bias": "lora_only"}, "trains biases"),
    ({"modules_to_save": ["lm_head"]}, "saves whole modules"),
    ({"target_modules": ["q_proj", "lm_head"]}, "adapts lm_head"),
    ({"peft_type": "IA3"}, "only LORA"),
])
def test_refuses_adapters_it_cannot_serve(graphs: dict[str, Path], tmp_path: Path, change: dict,
                                          message: str) -> None:
    peft_dir = shutil.copytree(graphs["peft_x"], tmp_path / "peft")
    config = json.loads((peft_dir / "adapter_config.json").read_text())
    (peft_dir / "adapter_config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(InvalidInput, match=message) as err:
        write_adapter(peft_dir, graphs["lora"], tmp_path / "out.onnx_adapter")
    assert err.value.hint and not (tmp_path / "out.onnx_adapter").exists()


def test_refuses_weights_outside_the_projections(graphs: dict[str, Path], tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    peft_dir = shutil.copytree(graphs["peft_x"], tmp_path / "peft")
    weights = load_file(str(peft_dir / "adapter_model.safetensors"))
    weights["base_model.model.model.embed_tokens.lora_embedding_A"] = torch.zeros(4, 512)
    save_file(weights, str(peft_dir / "adapter_model.safetensors"))
    with pytest.raises(InvalidInput, match="embed_tokens"):
        write_adapter(peft_dir, graphs["lora"], tmp_path / "out.onnx_adapter")


def test_refuses_a_graph_of_an_opset_without_pad_axes(graphs: dict[str, Path], tmp_path: Path) -> None:
    import onnx

    folder = tmp_path / "old-opset"
    shutil.copytree(graphs["base"], folder)
    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = 17
    onnx.save(model, str(folder / "model.onnx"))
    with pytest.raises(InvalidInput, match="opset 17; LoRA inputs need opset 18"):
        add_lora_inputs(folder)


def test_refuses_a_graph_without_lora_inputs(graphs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no LoRA inputs") as err:
        write_adapter(graphs["peft_x"], graphs["base"], tmp_path / "out.onnx_adapter")
    assert "add_lora_inputs" in err.value.hint


def test_a_bfloat16_adapter_converts_like_its_float32_copy(graphs: dict[str, Path], tmp_path: Path) -> None:
    """The conversion reads weights with numpy, which has no bfloat16: they are widened from their bits."""
    from safetensors.torch import load_file, save_file

    peft_dir = shutil.copytree(graphs["peft_x"], tmp_path / "bf16")
    weights = load_file(str(peft_dir / "adapter_model.safetensors"))
    save_file({k: v.bfloat16() for k, v in weights.items()}, str(peft_dir / "adapter_model.safetensors"))
    wide = shutil.copytree(graphs["peft_x"], tmp_path / "wide")
    save_file({k: v.bfloat16().float() for k, v in weights.items()}, str(wide / "adapter_model.safetensors"))
    write_adapter(peft_dir, graphs["lora"], tmp_path / "bf16.onnx_adapter")
    write_adapter(wide, graphs["lora"], tmp_path / "wide.onnx_adapter")
    assert (tmp_path / "bf16.onnx_adapter").read_bytes() == (tmp_path / "wide.onnx_adapter").read_bytes()


def test_a_graph_with_lora_inputs_of_another_layout_is_refused(graphs: dict[str, Path], tmp_path: Path) -> None:
    """Version 1 gave q/k/v one block-diagonal B: an adapter converted for it would not fit."""
    import onnx
    from onnx import helper

    from tunery.compiled.lora import META_KEY

    folder = shutil.copytree(graphs["lora"], tmp_path / "v1")
    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    helper.set_model_props(model, {**meta, META_KEY: json.dumps({**json.loads(meta[META_KEY]), "version": 1})})
    onnx.save(model, str(folder / "model.onnx"))
    with pytest.raises(InvalidInput, match="layout 1") as err:
        write_adapter(graphs["peft_x"], folder, tmp_path / "x.onnx_adapter")
    assert "again" in err.value.hint and not (tmp_path / "x.onnx_adapter").exists()
    with pytest.raises(InvalidInput, match="layout 1"):
        add_lora_inputs(folder)


def test_conversion_in_a_child_process_gives_the_same_file_and_the_same_refusals(graphs: dict[str, Path],
                                                                                 tmp_path: Path) -> None:
    """What a server does (``isolated``), so that the conversion's imports stay out of its memory."""
    from tunery.compiled.cache import CompiledBase

    copy = CompiledBase(shutil.copytree(graphs["lora"], tmp_path / "copy"), {})
    made = copy.adapter_file(graphs["peft_x"], "k1", isolated=True)
    assert made.read_bytes() == graphs["x"].read_bytes()
    peft_dir = shutil.copytree(graphs["peft_x"], tmp_path / "dora")
    config = json.loads((peft_dir / "adapter_config.json").read_text())
    (peft_dir / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(InvalidInput, match="DoRA") as err:
        copy.adapter_file(peft_dir, "k2", isolated=True)
    assert err.value.param == "adapter" and err.value.hint
