"""GPTQ weights for ONNX Runtime's ``MatMulNBits``: 4-bit blocks chosen with calibration data.

Round-to-nearest puts every weight on its nearest grid point independently. GPTQ (Frantar et al.,
2022) quantizes a matrix one input column at a time and spreads each column's rounding error over
the columns not yet quantized, weighted by the inverse Hessian ``H = X^T X`` of the layer's inputs
on calibration data, so the layer's *outputs* on real inputs move as little as possible. Here:

* the grid is exactly ``MatMulNBits``'s: blocks of 32 along the input dimension, one float scale
  and one unsigned integer zero point per block (so ONNX Runtime's fast int8-activation kernels
  run it, ``accuracy_level=4``); each block's scale is searched (clipping the range by up to 28%)
  when GPTQ reaches the block, on the error-corrected weights;
* the Hessians come from the float32 graph itself: the inputs of every ``MatMul`` are added as
  graph outputs and the calibration chats run through ONNX Runtime;
* the attention's input projections (``qkv_proj``; ``q/k/v_proj`` when unfused) stay at 8 bits:
  they were the most sensitive matrices on SmolLM2 (llama.cpp's ``Q4_K_M`` keeps ``attn_v`` higher
  for the same reason); everything else is 4-bit but a tied LM head: its blocks are the token
  embedding's table too, so it keeps the model builder's 8 bits and stays one copy (a 4-bit
  untied head decoded ~10% faster but was 15 MB larger and +0.9 points of loss);
* matrices that read the same input (an MLP's gate and up projections) become one
  ``MatMulNBits`` node and a ``Split``: one kernel call instead of two per layer.

Why our own: ONNX Runtime ships a GPTQ (``onnxruntime.quantization.neural_compressor``), but in
1.31 its error feedback reads the wrong half of the triangular inverse Hessian (``Hinv[i:, i]`` of
an upper-triangular factor), so every update is zero and the result equals round-to-nearest
exactly; ``tests/export/test_gptq.py`` checks ours beats round-to-nearest on the layer outputs.
Measured on the default SmolLM2 fine-tune (held-out travel chats; PyTorch simulation with an 8-bit
LM head): RTN 4-bit +12.5% loss, GPTQ 4-bit +6.0%, GPTQ with 8-bit attention inputs +1.8% to
+3.2% (4k to 15k calibration tokens); the builder's k-quant recipe: +7.4%. The export itself:
+1.8% at 21% of the float32 size, see benchmarks/RESULTS.md.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tunery.progress import Progress, say

BLOCK = 32
EIGHT_BIT = re.compile(r"(^|[/._])(qkv|q|k|v)_proj([/._]|$)")
"""Node names whose weights stay at 8 bits (the attention's input projections)."""



@dataclass
class BlockQuantized:
    """A ``[N, K]`` weight (rows = outputs) as ``MatMulNBits`` stores it before packing."""

    q: np.ndarray  # [N, K] uint8 levels in [0, 2**bits)
    scales: np.ndarray  # [N, K // BLOCK] float32
    zero_points: np.ndarray  # [N, K // BLOCK] uint8
    bits: int

    def dequantize(self) -> np.ndarray:
        n, k = self.q.shape
        q = self.q.reshape(n, k // BLOCK, BLOCK).astype(np.float32)
        return ((q - self.zero_points[..., None]) * self.scales[..., None]).reshape(n, k)


def _grid(w: Any, bits: int) -> tuple[Any, Any]:
    """Scale and integer zero point per row of ``w`` ``[N, BLOCK]``: the min/max range, shrunk by
    the factor (1.0 down to 0.72) that gives the least squared error."""
    import torch

    qmax = 2**bits - 1
    lo0, hi0 = w.amin(1).clamp(max=0), w.amax(1).clamp(min=0)
    best_s = best_z = best_e = None
    for p in (1.0 - i / 50 for i in range(15)):
        s = (hi0 - lo0) * p / qmax
        s = torch.where(s > 0, s, torch.ones_like(s))
        z = (-lo0 * p / s).round().clamp(0, qmax)
        deq = ((w / s[:, None]).round() + z[:, None]).clamp(0, qmax).sub(z[:, None]).mul(s[:, None])
        e = (deq - w).pow(2).sum(1)
        if best_e is None:
            best_s, best_z, best_e = s, z, e
        else:
            better = e < best_e
            best_s, best_z = torch.where(better, s, best_s), torch.where(better, z, best_z)
            best_e = torch.minimum(e, best_e)
    return best_s, best_z


def gptq(weight: np.ndarray, hessian: np.ndarray | None, bits: int, *, damp: float = 0.01,
         step: int = 128) -> BlockQuantized:
    """Quantize ``weight`` (``[K, N]``, ONNX ``MatMul`` layout) with GPTQ. ``hessian`` is ``X^T X``
    (``[K, K]``) of the calibration inputs; ``None`` (or the identity) gives round-to-nearest
    with the same grid search, since no error is then carried to other columns."""
    import torch

    k, n = weight.shape
    if k % BLOCK:
        raise ValueError(f"the input dimension ({k}) is not a multiple of {BLOCK}")
    step = max(BLOCK, step - step % BLOCK)
    qmax = 2**bits - 1
    W = torch.tensor(np.ascontiguousarray(weight.T), dtype=torch.float64)  # [N, K]
    H = torch.eye(k, dtype=torch.float64) if hessian is None else torch.tensor(hessian, dtype=torch.float64)
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    U = None
    for attempt in range(4):  # a Hessian that is not positive definite gets more damping
        try:
            Hd = H + damp * 10**attempt * torch.diag(H).mean() * torch.eye(k, dtype=torch.float64)
            U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(Hd)), upper=True)
            break
        except RuntimeError:
            continue
    if U is None:
        U = torch.eye(k, dtype=torch.float64)
    q = torch.empty((n, k), dtype=torch.uint8)
    scales = torch.empty((n, k // BLOCK), dtype=torch.float64)
    zeros = torch.empty((n, k // BLOCK), dtype=torch.float64)
    for i1 in range(0, k, step):
        i2 = min(i1 + step, k)
        W1 = W[:, i1:i2].clone()
        E = torch.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        s = z = None
        for i in range(i2 - i1):
            col = i1 + i
            if col % BLOCK == 0:
                s, z = _grid(W1[:, i:i + BLOCK], bits)
                scales[:, col // BLOCK], zeros[:, col // BLOCK] = s, z
            w = W1[:, i]
            level = ((w / s).round() + z).clamp(0, qmax)
            q[:, col] = level.to(torch.uint8)
            err = (w - (level - z) * s) / U1[i, i]
            W1[:, i:] -= err[:, None] * U1[i, i:][None, :]
            E[:, i] = err
        W[:, i2:] -= E @ U[i1:i2, i2:]
    return BlockQuantized(q.numpy(), scales.float().numpy(), zeros.to(torch.uint8).numpy(), bits)


def pack(bq: BlockQuantized) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``MatMulNBits`` inputs B ``[N, K/32, 32*bits/8]``, scales ``[N*K/32]`` and zero points
    (4-bit: two per byte, low nibble first, rows padded to whole bytes; 8-bit: one per byte)."""
    n, k = bq.q.shape
    nb = k // BLOCK
    blocks = bq.q.reshape(n, nb, BLOCK)
    if bq.bits == 4:
        b = (blocks[..., 0::2] | (blocks[..., 1::2] << 4)).astype(np.uint8)
        zp = bq.zero_points
        if nb % 2:
            zp = np.concatenate([zp, np.zeros((n, 1), np.uint8)], axis=1)
        zp = (zp[:, 0::2] | (zp[:, 1::2] << 4)).astype(np.uint8)
    elif bq.bits == 8:
        b, zp = blocks.astype(np.uint8), bq.zero_points
    else:
        raise ValueError(f"MatMulNBits blocks of {bq.bits} bits are not written here")
    return np.ascontiguousarray(b), bq.scales.reshape(-1).astype(np.float32), np.ascontiguousarray(zp.reshape(-1))


def relative_error(weight: np.ndarray, bq: BlockQuantized, hessian: np.ndarray) -> float:
    """How far the layer's outputs on the calibration inputs move: ``|X dW| / |X W|`` (Frobenius)."""
    d = (weight - bq.dequantize().T).astype(np.float64)
    w = weight.astype(np.float64)
    return float(np.sqrt(np.sum(d * (hessian @ d)) / max(float(np.sum(w * (hessian @ w))), 1e-30)))


# -- the graphs ------------------------------------------------------------------------------------

def _weighted_matmuls(model: Any) -> dict[str, Any]:
    """MatMul nodes whose right operand is a 2-D initializer (a weight), by node name."""
    inits = {t.name: t for t in model.graph.initializer}
    return {node.name: node for node in model.graph.node
            if node.op_type == "MatMul" and len(node.input) == 2 and node.input[1] in inits
            and len(inits[node.input[1]].dims) == 2}


def hessians(fp32_dir: Path, sequences: Sequence[Sequence[int]], progress: Progress | None = None
             ) -> dict[str, np.ndarray]:
    """``X^T X`` of the input of every weighted MatMul of the float32 graph in ``fp32_dir`` over the
    token ``sequences``, keyed by the input tensor's name."""
    import onnx

    from tunery.compiled.scorers import decoder_feeds, kv_shape
    from tunery.runtime import ort_session

    model = onnx.load(str(fp32_dir / "model.onnx"), load_external_data=False)
    names = sorted({node.input[0] for node in _weighted_matmuls(model).values()})
    present = {o.name for o in model.graph.output}
    for name in names:
        if name not in present:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    probe = fp32_dir / "calibrate.onnx"  # beside model.onnx.data, which it refers to
    onnx.save(model, str(probe))
    session = ort_session(probe)
    kv = kv_shape(fp32_dir)
    acc: dict[str, np.ndarray] = {}
    for i, ids in enumerate(sequences):
        say(progress, f"calibrating: chat {i + 1}/{len(sequences)} through the float32 graph")
        outs = session.run(names, decoder_feeds(session, list(ids), kv))
        for name, x in zip(names, outs, strict=True):
            x = x.reshape(-1, x.shape[-1]).astype(np.float32)
            h = (x.T @ x).astype(np.float64)
            acc[name] = acc[name] + h if name in acc else h
    del session
    probe.unlink()
    return acc


@dataclass
class GptqSummary:
    matrices_4bit: int
    matrices_8bit: int
    kept: list[str]  # MatMulNBits nodes left as the model builder quantized them
    fused: int  # groups of sibling matrices now one node
    median_error: float  # median relative output error of the requantized matrices
    sequences: int
    tokens: int

    def to_dict(self) -> dict[str, Any]:
        return {"method": "gptq", "block_size": BLOCK, "matrices_4bit": self.matrices_4bit,
                "matrices_8bit": self.matrices_8bit, "kept_from_builder": self.kept, "fused_groups": self.fused,
                "median_relative_output_error": round(self.median_error, 5),
                "calibration_sequences": self.sequences, "calibration_tokens": self.tokens}


def requantize(int_dir: Path, fp32_dir: Path, sequences: Sequence[Sequence[int]],
               progress: Progress | None = None) -> GptqSummary:
    """Replace the weights of every ``MatMulNBits`` node of the model builder's int4 graph in
    ``int_dir`` by GPTQ's, computed from the same node's float32 weight in ``fp32_dir`` (same
    builder, same node names less the ``_Q4``/``_Q8`` suffix), fuse the nodes that read the same
    input, and rewrite ``int_dir/model.onnx``."""
    import onnx
    from onnx import numpy_helper

    H = hessians(fp32_dir, sequences, progress)
    fp32 = onnx.load(str(fp32_dir / "model.onnx"), load_external_data=False)
    sources = _weighted_matmuls(fp32)
    inits = {t.name: t for t in fp32.graph.initializer}
    model = onnx.load(str(int_dir / "model.onnx"))
    targets = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
    shared = _shared_with_lookups(model)
    kept, errors, done = [], [], []
    for i, node in enumerate(targets):
        base = re.sub(r"_Q\d+$", "", node.name)
        src = None if node.input[1] in shared else sources.get(base)
        attrs = {a.name: a for a in node.attribute}
        weight = None if src is None or src.input[0] not in H or attrs["K"].i % BLOCK \
            else numpy_helper.to_array(inits[src.input[1]], str(fp32_dir)).astype(np.float32)
        if weight is None or weight.shape != (attrs["K"].i, attrs["N"].i):
            kept.append(node.name)
            continue
        bits = 8 if EIGHT_BIT.search(src.name) else 4
        say(progress, f"GPTQ {bits}-bit: matrix {i + 1}/{len(targets)} ({src.name})")
        bq = gptq(weight, H[src.input[0]], bits)
        errors.append(relative_error(weight, bq, H[src.input[0]]))
        done.append((node, base, bq))
    fused = 0
    for group in _siblings(done):
        fused += len(group) > 1
        _write_weights(model, group)
    used = {name for n in model.graph.node for name in n.input}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    with tempfile.TemporaryDirectory(prefix=".gptq-", dir=int_dir) as tmp:
        onnx.save(model, str(Path(tmp) / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                  location="model.onnx.data", size_threshold=1024)
        for name in ("model.onnx.data", "model.onnx"):
            (Path(tmp) / name).replace(int_dir / name)
    return GptqSummary(sum(bq.bits == 4 for *_, bq in done), sum(bq.bits == 8 for *_, bq in done), kept, fused,
                       float(np.median(errors)) if errors else 0.0, len(sequences), sum(len(s) for s in sequences))


def _shared_with_lookups(model: Any) -> set[str]:
    """Weights that an embedding lookup (``GatherBlockQuantized``) reads too: a tied LM head. GPTQ
    leaves them as the builder quantized them (8 bits): new weights would untie them and store the
    largest matrix twice."""
    made_by = {out: n for n in model.graph.node for out in n.output}
    shared: set[str] = set()
    for n in model.graph.node:
        if n.op_type == "GatherBlockQuantized":
            for name in n.input:  # the table may reach the lookup through a Reshape
                shared.add(name)
                if name in made_by and made_by[name].op_type == "Reshape":
                    shared.add(made_by[name].input[0])
    return shared


Done = tuple[Any, str, BlockQuantized]  # the graph node, its name less the bits suffix, its weights


def _siblings(done: list[Done]) -> list[list[Done]]:
    """Nodes that read the same input with the same settings and no bias (an MLP's gate and up
    projections), in graph order: one ``MatMulNBits`` for them runs faster than two at decode."""
    groups: dict[tuple, list[Done]] = {}
    for item in done:
        node, _, bq = item
        attrs = {a.name: (a.i if a.type == a.INT else None) for a in node.attribute}
        key = (node.input[0], bq.bits, attrs.get("K"), attrs.get("accuracy_level"), len(node.input) > 4)
        groups.setdefault(key if len(node.input) <= 4 else (id(node),), []).append(item)
    return list(groups.values())


def _write_weights(model: Any, group: list[Done]) -> None:
    """Point the node at GPTQ's packed weights; a group of siblings becomes one node whose output
    a ``Split`` hands back under the original names."""
    from onnx import helper, numpy_helper

    node, base, bq = group[0]
    if len(group) > 1:
        bq = BlockQuantized(*(np.concatenate([getattr(g[2], f) for g in group]) for f in ("q", "scales",
                                                                                           "zero_points")), bq.bits)
        parent, _, _ = base.rpartition("/")
        parent = parent.rpartition("/")[0]
        base = f"{parent}/{'+'.join(g[1].split('/')[-2] for g in group)}/MatMul"
        sizes = [g[2].q.shape[0] for g in group]
        outputs = [g[0].output[0] for g in group]
        split_sizes = numpy_helper.from_array(np.array(sizes, dtype=np.int64), f"{base}/split_sizes")
        model.graph.initializer.append(split_sizes)
        joined = f"{base}/output_0"
        del node.output[:]
        node.output.append(joined)
        at = list(model.graph.node).index(node)
        model.graph.node.insert(at + 1, helper.make_node("Split", [joined, split_sizes.name], outputs, axis=-1,
                                                         name=f"{base}/Split"))
        for other, _, _ in group[1:]:
            model.graph.node.remove(other)
    b, scales, zp = pack(bq)
    stem = re.sub(r"\W+", "_", base.strip("/"))
    new = [numpy_helper.from_array(b, f"{stem}.gptq.q"), numpy_helper.from_array(scales, f"{stem}.gptq.scales"),
           numpy_helper.from_array(zp, f"{stem}.gptq.zero_points")]
    model.graph.initializer.extend(new)
    while len(node.input) < 4:  # A, B, scales, zero_points[, g_idx, bias]: later inputs stay
        node.input.append("")
    for slot, t in enumerate(new, start=1):
        node.input[slot] = t.name
    for a in node.attribute:
        if a.name in ("bits", "block_size", "N"):
            a.i = {"bits": bq.bits, "block_size": BLOCK, "N": bq.q.shape[0]}[a.name]
    node.name = f"{base}_Q{bq.bits}"
