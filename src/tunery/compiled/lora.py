"""LoRA fine-tunes served as ONNX Runtime adapters over one shared ONNX base graph.

:func:`add_lora_inputs` gives every decoder projection of an exported graph (float32 ``MatMul``
or quantized ``MatMulNBits``; of some layers only, when asked) a low-rank side path,
``out += (x @ A) @ B``, whose ``A`` and ``B`` are *overridable initializers*: graph inputs that
also have a default. The defaults are empty
(``A`` ``[K, 0]``, ``B`` ``[0, N]``), so with no adapter active the side path adds an exact zero
and the logits are bit-for-bit the base graph's (tests/compiled/test_onnx_lora.py checks it, in
ONNX Runtime and in onnxruntime-genai). :func:`write_adapter` turns a PEFT LoRA folder into an
``.onnx_adapter`` file whose parameters replace those defaults: onnxruntime-genai loads many such
files into one ``og.Adapters`` and each generator picks its own with ``set_active_adapter``, all
over a single copy of the base weights.

Every PEFT module gets a side path and an ``A``/``B`` pair of its own (``lora.layers.3.q.A``),
also where the model builder packs q/k/v into one node or GPTQ fuses gate and up: the side paths
of a fused node are concatenated, in its output order, before they are added. (Version 1 gave a
fused node one pair, its ``B`` block-diagonal: two thirds of a q/k/v ``B`` were stored zeros,
resident in memory for every loaded adapter.) Version 3 gives each side path one more row of
zeros, dropped after its MatMuls, so that a lone decode row runs the float kernel a batch runs and
an adapter's answer no longer depends on its batch (see :func:`add_lora_inputs`). What the graph
looks like to an adapter is written into ``model.onnx``'s metadata (``tunery.lora``,
:data:`LAYOUT`): one *target* per projection node, with the LoRA inputs of the PEFT modules it
stands for and their output widths.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from tunery.errors import InvalidInput

META_KEY = "tunery.lora"
LAYOUT = 3
"""The version of the LoRA inputs :func:`add_lora_inputs` writes; :func:`write_adapter` converts for
this one only (``tunery.compiled.cache`` keys its copies by it, so an older copy is rebuilt)."""
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
FUSED = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}
"""PEFT modules of families that fuse projections (Phi-3), and the projections they stack, in row
order: their ``B`` splits by rows into one LoRA per projection, sharing ``A``."""
_ADAPTABLE = (*PROJECTIONS, *FUSED)
# the builder's (and GPTQ's) projection nodes: /model/layers.3/attn/qkv_proj/MatMul_Q8,
# /model/layers.3/mlp/gate_proj+up_proj/MatMul_Q4, /model/layers.3/mlp/down_proj/MatMul
_NODE = re.compile(r"^/model/layers\.(\d+)/(?:attn|mlp)/([a-z_+]+)/MatMul(?:_Q\d+)?$")
_PEFT_KEY = re.compile(r"^base_model\.model\.(?:model\.)?layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_([AB])\.weight$")
# The side path's extra row (see add_lora_inputs): padded at the end of axis -2, sliced off as [0, -1)
_ZERO, _LAST, _ROWS, _PADS = "lora.row.zero", "lora.row.last", "lora.row.axis", "lora.row.pads"
_DTYPES = {1: np.float32, 10: np.float16}  # ONNX TensorProto element types the side path may run in


def add_lora_inputs(folder: Path, layers: Iterable[int] | None = None) -> list[str]:
    """Add a LoRA side path to every decoder projection of ``folder/model.onnx`` (of the decoder
    ``layers`` only, when given) and return the names of its ``A`` and ``B`` inputs
    (``lora.layers.N.q.A``, ..., one pair per PEFT module). A graph that has them already is left as it is (its names are
    returned). Only ``model.onnx`` is rewritten: the new defaults are empty, so the weights in
    ``model.onnx.data`` stay where they are.

    Why ``layers``: each side path is four to nine more nodes run at every decode step, adapter or
    not (a ``Pad`` shared by the projections of one input, two ``MatMul`` per PEFT module, a
    ``Concat`` for a fused node, a ``Slice`` and an ``Add``); when every adapter to be served
    touches only some layers, the others need none."""
    import onnx
    from onnx import helper, numpy_helper

    folder = Path(folder)
    path = folder / "model.onnx"
    if not path.exists():
        raise InvalidInput(f"{folder} has no model.onnx", param="folder",
                           hint="build one with `tunery export MODEL --format onnx -o DIR`")
    model = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    wanted = None if layers is None else {int(n) for n in layers}
    if META_KEY in meta:
        done = _layout(meta, path)
        have = {t["layer"] for t in done["targets"]}
        if wanted is not None and not wanted <= have:
            raise InvalidInput(f"{path} already has LoRA inputs, for layers {sorted(have)}; not for "
                               f"{sorted(wanted - have)}", param="layers",
                               hint="add them to a fresh copy of the export")
        return _names(done)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 18:  # Pad takes its axes as an input from opset 18 on
        raise InvalidInput(f"{path} is of ONNX opset {opset}; LoRA inputs need opset 18 or later", param="folder",
                           hint="export the model again with `tunery export MODEL --format onnx`")
    decoder = json.loads((folder / "genai_config.json").read_text())["model"]["decoder"]
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    targets, inserts = [], []
    padded: dict[str, str] = {}  # a projection's input -> that input with the extra row
    for at, node in enumerate(graph.node):
        found = _NODE.match(node.name)
        shape = _shape(node, inits) if found else None
        if shape is None:
            continue
        layer, kind = int(found.group(1)), found.group(2)
        if wanted is not None and layer not in wanted:
            continue
        K, N, elem = shape
        modules = _modules(kind, N, decoder, consumers.get(node.output[0], []), inits)
        out, base = node.output[0], f"{node.output[0]}/lora_base"
        node.output[0] = base
        stem = node.name.rsplit("/", 1)[0] + "/lora"
        dtype = _DTYPES[elem]
        # One more (zero) row under x, dropped from the result: with a single row (one sequence
        # decoding) ONNX Runtime's float MatMul takes another kernel, whose sums differ in the last
        # bits from the one it takes for two rows or more, so an answer would change with the batch
        # it ran in. With two rows or more each row comes out the same however many there are, on
        # ONNX Runtime's CPU kernels as measured (M = 2..9 agree; tests/compiled/test_onnx_lora.py
        # checks it on the machine it runs on). Projections of one input (gate, up) share the Pad.
        new, xp = [], padded.get(node.input[0])
        if xp is None:
            xp = padded[node.input[0]] = f"{stem}/Pad_x/output_0"
            new.append(helper.make_node("Pad", [node.input[0], _PADS, "", _ROWS], [xp], name=f"{stem}/Pad_x"))
        parts, loras = [], []
        for module, width in modules:
            name = f"lora.layers.{layer}.{module.removesuffix('_proj')}"
            a, b, at_m = f"{name}.A", f"{name}.B", f"{stem}/{module}"
            graph.initializer.extend([numpy_helper.from_array(np.zeros((K, 0), dtype), a),
                                      numpy_helper.from_array(np.zeros((0, width), dtype), b)])
            graph.input.extend([helper.make_tensor_value_info(a, elem, [K, f"{name}.rank"]),
                                helper.make_tensor_value_info(b, elem, [f"{name}.rank", width])])
            xa, xab = f"{at_m}/MatMul_A/output_0", f"{at_m}/MatMul_B/output_0"
            new += [helper.make_node("MatMul", [xp, a], [xa], name=f"{at_m}/MatMul_A"),
                    helper.make_node("MatMul", [xa, b], [xab], name=f"{at_m}/MatMul_B")]
            parts.append(xab)
            loras.append({"name": name, "module": module, "width": width})
        if len(parts) > 1:  # a fused node: its modules' side paths side by side, in its output order
            new.append(helper.make_node("Concat", parts, [f"{stem}/Concat/output_0"], name=f"{stem}/Concat", axis=-1))
            parts = [f"{stem}/Concat/output_0"]
        side = f"{stem}/Slice_y/output_0"
        new += [helper.make_node("Slice", [parts[0], _ZERO, _LAST, _ROWS], [side], name=f"{stem}/Slice_y"),
                helper.make_node("Add", [base, side], [out], name=f"{stem}/Add")]
        targets.append({"layer": layer, "node": node.name, "K": K, "N": N, "dtype": elem, "loras": loras})
        inserts.append((at, new))
    if not targets:
        raise InvalidInput(f"{path} has no decoder projections to attach LoRA to", param="folder",
                           hint="export the model with `tunery export MODEL --format onnx`")
    graph.initializer.extend(numpy_helper.from_array(np.array(v, np.int64), n)
                             for n, v in ((_ZERO, [0]), (_LAST, [-1]), (_ROWS, [-2]), (_PADS, [0, 1])))
    for at, new in reversed(inserts):  # from the end, so earlier positions stay put
        for i, n in enumerate(new):
            graph.node.insert(at + 1 + i, n)
    helper.set_model_props(model, {**meta, META_KEY: json.dumps({"version": LAYOUT, "targets": targets})})
    # one file replaced, so a crash leaves the old graph or the new one, never a mix
    fd, tmp = tempfile.mkstemp(prefix=".lora-", suffix=".onnx", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(model.SerializeToString())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return _names({"targets": targets})


def write_adapter(peft_dir: Path, folder: Path, out: Path) -> dict[str, Any]:
    """Convert the PEFT LoRA adapter in ``peft_dir`` into the ``.onnx_adapter`` file ``out`` for
    the graph in ``folder`` (prepared by :func:`add_lora_inputs`), scaling folded into ``B``.
    Projections the adapter leaves alone get no parameter, so the graph's empty default applies.

    numpy only (no torch): a server converts on first use, and what a conversion allocates should
    not stay in its memory beside the adapter it serves."""
    import onnx
    import onnxruntime as ort

    peft_dir, folder, out = Path(peft_dir), Path(folder), Path(out)
    config = _peft_config(peft_dir)
    weights = _peft_weights(peft_dir)
    meta = {p.key: p.value for p in onnx.load(str(folder / "model.onnx"), load_external_data=False).metadata_props}
    if META_KEY not in meta:
        raise InvalidInput(f"{folder}/model.onnx has no LoRA inputs", param="folder",
                           hint="run tunery.compiled.lora.add_lora_inputs on the folder first")
    targets = _layout(meta, folder / "model.onnx")["targets"]
    weights = _unfused(weights, targets)
    loras = {(t["layer"], lo["module"]): (t, lo) for t in targets for lo in t["loras"]}
    unknown = sorted(f"layers.{layer}.{m}" for layer, m in weights if (layer, m) not in loras)
    if unknown:
        raise InvalidInput(f"{folder} has no LoRA input for the adapter's {unknown[0]} "
                           f"({len(unknown)} such module(s))", param="adapter",
                           hint="convert an adapter trained on the model this graph was exported from; or add "
                                "LoRA inputs for every layer it adapts to a fresh copy of the export")
    params: dict[str, np.ndarray] = {}
    ranks, layers = set(), set()
    for (layer, module), (A, B) in sorted(weights.items()):
        t, lo = loras[layer, module]
        r = A.shape[0]
        if A.shape != (r, t["K"]) or B.shape != (lo["width"], r):
            raise InvalidInput(f"the adapter's layers.{layer}.{module} has shapes {A.shape}, {B.shape}; "
                               f"the graph expects ({r}, {t['K']}), ({lo['width']}, {r})", param="adapter",
                               hint="convert an adapter trained on the model this graph was exported from")
        dtype = _DTYPES[t["dtype"]]
        params[f"{lo['name']}.A"] = np.ascontiguousarray(A.T, dtype=dtype)
        params[f"{lo['name']}.B"] = np.ascontiguousarray(B.T * _scaling(config, r), dtype=dtype)
        ranks.add(r)
        layers.add(layer)
    if not params:
        raise InvalidInput(f"{peft_dir} has no LoRA weights", param="adapter",
                           hint="point at the folder PEFT's save_pretrained wrote")
    fmt = ort.AdapterFormat()
    fmt.set_adapter_version(1)
    fmt.set_model_version(1)
    fmt.set_parameters({k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in params.items()})
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}-", dir=out.parent)
    os.close(fd)
    try:
        fmt.export_adapter(tmp)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {"parameters": len(params), "rank": max(ranks), "layers": sorted(layers),
            "bytes": out.stat().st_size}


def _layout(meta: dict[str, str], path: Path) -> dict[str, Any]:
    """The LoRA inputs ``path`` declares, refused when they are of another :data:`LAYOUT`."""
    done = json.loads(meta[META_KEY])
    if done.get("version") != LAYOUT:
        raise InvalidInput(f"{path} has LoRA inputs of layout {done.get('version')}; this version of tunery "
                           f"writes and converts for layout {LAYOUT}", param="folder",
                           hint="build the copy again (`tunery.compiled.cache` does so for its own copies)")
    return done


def _unfused(weights: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]], targets: list[dict[str, Any]]
             ) -> dict[tuple[int, str], tuple[np.ndarray, np.ndarray]]:
    """``weights`` with each fused module (:data:`FUSED`) split into its projections, by the output
    widths the graph gives them."""
    widths = {(t["layer"], lo["module"]): lo["width"] for t in targets for lo in t["loras"]}
    out = {}
    for (layer, module), (A, B) in weights.items():
        if module not in FUSED:
            out[layer, module] = (A, B)
            continue
        parts = [(p, widths.get((layer, p))) for p in FUSED[module]]
        if any(w is None for _, w in parts) or sum(w for _, w in parts) != B.shape[0]:
            raise InvalidInput(f"the adapter's layers.{layer}.{module} ({B.shape[0]} outputs) does not match the "
                               f"graph's {', '.join(FUSED[module])}", param="adapter",
                               hint="convert an adapter trained on the model this graph was exported from")
        row = 0
        for p, w in parts:
            out[layer, p] = (A, B[row:row + w])
            row += w
    return out


def _names(meta: dict[str, Any]) -> list[str]:
    return [f"{lo['name']}.{x}" for t in meta["targets"] for lo in t["loras"] for x in ("A", "B")]


def _shape(node: Any, inits: dict[str, Any]) -> tuple[int, int, int] | None:
    """``(K, N, element type)`` of a projection node, ``None`` for one this module cannot extend."""
    if node.op_type == "MatMul" and node.input[1] in inits and len(inits[node.input[1]].dims) == 2:
        w = inits[node.input[1]]
        return (*w.dims, w.data_type) if w.data_type in _DTYPES else None
    if node.op_type == "MatMulNBits" and node.input[2] in inits:
        attrs = {a.name: a.i for a in node.attribute}
        elem = inits[node.input[2]].data_type  # the scales are in the activations' type
        return (attrs["K"], attrs["N"], elem) if elem in _DTYPES else None
    return None


def _modules(kind: str, N: int, decoder: dict[str, Any], consumers: list[Any],
             inits: dict[str, Any]) -> list[tuple[str, int]]:
    """The PEFT modules a projection node computes, each with its output width, in output order."""
    if kind == "qkv_proj":
        q = decoder["head_size"] * decoder["num_attention_heads"]
        kv = decoder["head_size"] * decoder["num_key_value_heads"]
        return [("q_proj", q), ("k_proj", kv), ("v_proj", kv)]
    parts = kind.split("+")
    if len(parts) == 1:
        return [(kind, N)]
    split = next((n for n in consumers if n.op_type == "Split"), None)
    if split is not None and len(split.input) > 1 and split.input[1] in inits:
        from onnx import numpy_helper

        widths = [int(w) for w in numpy_helper.to_array(inits[split.input[1]])]
    else:
        widths = [N // len(parts)] * len(parts)
    return list(zip(parts, widths, strict=True))


def convertible(peft_dir: Path) -> str | None:
    """Why the PEFT adapter in ``peft_dir`` cannot become an ONNX adapter (None when it can): the
    checks :func:`write_adapter` makes, on the config and the weights' names only (no tensor is
    read), so a server can route such a fine-tune to PyTorch before a request fails."""
    peft_dir = Path(peft_dir)
    try:
        _peft_config(peft_dir)
        path = peft_dir / "adapter_model.safetensors"
        if not path.exists():
            return "its weights are not in adapter_model.safetensors"
        names = _weight_names(path)
    except InvalidInput as e:
        return e.message.split(": ", 1)[-1]
    except (OSError, ValueError) as e:
        return f"its weights cannot be read ({e})"
    other = [k for k in names if (m := _PEFT_KEY.match(k)) is None or m.group(2) not in _ADAPTABLE]
    return f"it holds weights outside the LoRA projections, e.g. {other[0]}" if other else None


def adapter_layers(peft_dir: Path) -> frozenset[int] | None:
    """The decoder layers the PEFT adapter in ``peft_dir`` has weights for, from the names in its
    safetensors header (no tensor is read); None when they cannot be read (take it as every layer).
    A compiled copy with side paths on these layers (:func:`add_lora_inputs`' ``layers``) serves it."""
    try:
        names = _weight_names(Path(peft_dir) / "adapter_model.safetensors")
    except (OSError, ValueError):
        return None
    return frozenset(int(m.group(1)) for k in names if (m := _PEFT_KEY.match(k)))


def _weight_names(path: Path) -> list[str]:
    """The tensor names in a safetensors file's header; ``ValueError`` when it is not one (the
    library's own ``SafetensorError`` derives from neither ``OSError`` nor ``ValueError``)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            return list(f.keys())
    except SafetensorError as e:
        raise ValueError(str(e)) from e


def _peft_config(peft_dir: Path) -> dict[str, Any]:
    path = peft_dir / "adapter_config.json"
    if not path.exists():
        raise InvalidInput(f"{peft_dir} has no adapter_config.json", param="adapter",
                           hint="point at the folder PEFT's save_pretrained wrote")
    config = json.loads(path.read_text())
    problems = []
    if config.get("peft_type", "LORA") != "LORA":
        problems.append(f"peft_type is {config['peft_type']} (only LORA converts)")
    if config.get("use_dora"):
        problems.append("it is a DoRA adapter (use_dora), whose magnitude vector is not a low-rank sum")
    if config.get("bias", "none") != "none":
        problems.append(f"it trains biases (bias={config['bias']!r})")
    if config.get("modules_to_save"):
        problems.append(f"it saves whole modules ({', '.join(config['modules_to_save'])})")
    if config.get("fan_in_fan_out"):
        problems.append("its weights are stored transposed (fan_in_fan_out)")
    if config.get("alpha_pattern"):
        problems.append("it scales modules differently (alpha_pattern)")
    targets = config.get("target_modules")
    if isinstance(targets, list):
        outside = sorted(set(targets) - set(_ADAPTABLE))
        if outside:
            problems.append(f"it adapts {', '.join(outside)}, outside the attention and MLP projections")
    if problems:
        raise InvalidInput(f"{peft_dir} cannot be served as an ONNX adapter: {'; '.join(problems)}",
                           param="adapter", hint="serve it with the PyTorch engine, or merge it and export the merged "
                                                 "model with `tunery export MODEL --format onnx`")
    return config


def _peft_weights(peft_dir: Path) -> dict[tuple[int, str], tuple[np.ndarray, np.ndarray]]:
    """``{(layer, module): (A [r, K], B [N, r])}`` in float32, read with numpy (bfloat16, which
    numpy lacks, widened from its bits)."""
    from safetensors import safe_open

    path = peft_dir / "adapter_model.safetensors"
    if not path.exists():
        raise InvalidInput(f"{peft_dir} has no adapter_model.safetensors", param="adapter",
                           hint="save the adapter with PEFT's save_pretrained (safetensors is its default)")
    halves: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    other = []
    with safe_open(str(path), framework="np") as f:
        for key in f.keys():  # noqa: SIM118 - a safetensors file is not a dict
            found = _PEFT_KEY.match(key)
            if found is None or found.group(2) not in _ADAPTABLE:
                other.append(key)
                continue
            tensor = (_bfloat16(path, key) if f.get_slice(key).get_dtype() == "BF16"
                      else f.get_tensor(key).astype(np.float32, copy=False))
            halves.setdefault((int(found.group(1)), found.group(2)), {})[found.group(3)] = tensor
    if other:
        raise InvalidInput(f"{peft_dir} holds weights outside the LoRA projections, e.g. {other[0]} "
                           f"({len(other)} tensor(s))", param="adapter",
                           hint="serve it with the PyTorch engine, or merge it and export the merged model")
    broken = sorted(f"layers.{k[0]}.{k[1]}" for k, v in halves.items() if set(v) != {"A", "B"})
    if broken:
        raise InvalidInput(f"{peft_dir} has lora_A without lora_B (or the reverse) for {broken[0]}",
                           param="adapter", hint="save the adapter again with PEFT's save_pretrained")
    return {k: (v["A"], v["B"]) for k, v in halves.items()}


def _bfloat16(path: Path, key: str) -> np.ndarray:
    """A bfloat16 tensor of a safetensors file as float32: its bits are a float32's upper half."""
    with path.open("rb") as fh:
        header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
        start, end = header[key]["data_offsets"]
        fh.seek(fh.tell() + start)  # the data begin right after the header
        raw = fh.read(end - start)
    return (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(header[key]["shape"])


def _scaling(config: dict[str, Any], r: int) -> float:
    alpha = float(config.get("lora_alpha", r))
    return alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r


def _main(argv: list[str]) -> int:
    """``python -m tunery.compiled.lora PEFT_DIR FOLDER OUT``: :func:`write_adapter` in a process of
    its own (``tunery.compiled.cache`` runs it so for a server); a refusal is printed as JSON."""
    try:
        print(json.dumps(write_adapter(Path(argv[0]), Path(argv[1]), Path(argv[2]))))
    except InvalidInput as e:
        print(json.dumps({"error": {"message": e.message, "param": e.param, "hint": e.hint}}))
        return 2
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(_main(sys.argv[1:]))
