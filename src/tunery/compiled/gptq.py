"""GPTQ weights for ONNX Runtime's ``MatMulNBits``: 4-bit blocks chosen with calibration data.

Round-to-nearest puts every weight on its nearest grid point independently. GPTQ (Frantar et al.,
2022) quantizes a matrix one input column at a time and spreads each column's rounding error over
the columns not yet quantized, weighted by the inverse Hessian ``H = X^T X`` of the layer's inputs
on calibration data, so the layer's *outputs* on real inputs move as little as possible. Here:

* the grid is exactly ``MatMulNBits``'s: blocks of 32 along the input dimension, one float scale
  and one unsigned integer zero point per block (so ONNX Runtime's fast int8-activation kernels
  run it, ``accuracy_level=4``); each block's scale is searched (clipping the range by up to 28%)
  when GPTQ reaches the block, on the error-corrected weights;
* the Hessians and the float weights come from the PyTorch model: hooks on its linear layers sum
  ``X^T X`` (float64) over the calibration chats, run in padded batches with the padding left
  out; projections that read the same tensor (q/k/v, gate/up) share one Hessian. (Running each
  chat through a float32 ONNX graph instead took minutes, plus a builder run for that graph.);
* matrices of the same shape, bits and role in every layer are quantized as one batch, and
  matrices sharing a Hessian as one taller matrix (GPTQ treats rows independently): one Python
  loop over the columns for all of them, in float32 (only the inverse-Hessian factor is float64;
  the levels match a float64 run but for rare ties);
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
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tunery.progress import Progress, say

BLOCK = 32
EIGHT_BIT = re.compile(r"(^|[/._])(qkv|q|k|v)_proj([/._]|$)")
"""Node names whose weights stay at 8 bits (the attention's input projections)."""
CLIP = tuple(1.0 - i / 50 for i in range(15))
"""The fractions of a block's min/max range its scale search tries."""
GRID_CHUNK = 1024
"""Blocks searched at once: ``len(CLIP) * BLOCK * GRID_CHUNK`` floats fit a CPU's cache."""
BATCH_TOKENS = 1024
"""Padded tokens per calibration forward pass: big enough for fast matrix products, small enough
that each worker's activations stay small and the batches share out evenly."""


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
    """Scale and integer zero point per column of ``w`` ``[BLOCK, R]``: the min/max range, shrunk by
    the fraction in ``CLIP`` that gives the least squared error (the first one on a tie)."""
    import torch

    qmax = 2**bits - 1
    p = torch.tensor(CLIP, dtype=w.dtype)[:, None]
    scales, zeros = torch.empty(w.shape[1], dtype=w.dtype), torch.empty(w.shape[1], dtype=w.dtype)
    for r0 in range(0, w.shape[1], GRID_CHUNK):  # [CLIP, BLOCK, chunk] stays in the CPU's cache
        x = w[:, r0:r0 + GRID_CHUNK]
        lo, hi = x.amin(0).clamp(max=0), x.amax(0).clamp(min=0)
        s = (hi - lo) * p / qmax  # [CLIP, chunk]
        s = torch.where(s > 0, s, torch.ones_like(s))
        z = (-lo * p / s).round().clamp(0, qmax)
        # a weight's error is s * (clamp(round(t) + z) - z - t) with t = w / s
        t = x / s[:, None]
        r = t.round().add_(z[:, None]).clamp_(0, qmax).sub_(z[:, None]).sub_(t)
        best = r.square_().sum(1).mul_(s.square()).argmin(0, keepdim=True)
        scales[r0:r0 + GRID_CHUNK], zeros[r0:r0 + GRID_CHUNK] = s.gather(0, best)[0], z.gather(0, best)[0]
    return scales, zeros


def _inverse_factor(H: Any, damp: float) -> Any:
    """Upper-triangular ``U`` with ``U^T U = (H + damping)^-1`` for each ``[K, K]`` of ``H``: the
    Cholesky factor of the reversed matrix, inverted and reversed back (one factorization where
    ``cholesky(inverse(H), upper=True)`` takes three). A Hessian that is not positive definite
    gets more damping; the identity (round-to-nearest) if that fails too."""
    import torch

    b, k, _ = H.shape
    eye = torch.eye(k, dtype=H.dtype)
    U = eye.repeat(b, 1, 1)
    mean = H.diagonal(dim1=-2, dim2=-1).mean(-1)
    todo = torch.arange(b)
    for attempt in range(4):
        Hd = H[todo] + (damp * 10**attempt * mean[todo])[:, None, None] * eye
        L, info = torch.linalg.cholesky_ex(Hd.flip(-2, -1))
        ok = info == 0
        if ok.any():
            U[todo[ok]] = torch.linalg.solve_triangular(L[ok], eye, upper=False).flip(-2, -1)
        todo = todo[~ok]
        if not len(todo):
            break
    return U


def _gptq_batch(W: Any, H: Any, bits: int, damp: float = 0.01) -> tuple[Any, Any, Any, Any]:
    """GPTQ of ``B`` matrices at once: ``W`` ``[B, K, N]`` float32 (ONNX layout, so a column of
    inputs is contiguous; overwritten), ``H`` ``[B, K, K]``. Returns levels ``[B, K, N]``, scales
    and zero points ``[B, K / BLOCK, N]``, and each output's error ``|X dw|^2`` as GPTQ's own sum
    of squared scaled rounding errors (``[B, N]``, on the damped Hessian)."""
    import torch

    b, k, n = W.shape
    if k % BLOCK:
        raise ValueError(f"the input dimension ({k}) is not a multiple of {BLOCK}")
    qmax = 2**bits - 1
    H = H.clone()
    diag = H.diagonal(dim1=-2, dim2=-1)
    dead = diag == 0  # inputs that were always zero: their weights do not matter
    diag[dead] = 1
    W.masked_fill_(dead[:, :, None], 0)
    U = _inverse_factor(H, damp).float()
    q = torch.empty((b, k, n), dtype=torch.uint8)
    scales = torch.empty((b, k // BLOCK, n))
    zeros = torch.empty((b, k // BLOCK, n))
    loss = torch.zeros((b, n), dtype=torch.float64)
    E = torch.empty((b, BLOCK, n))
    for i1 in range(0, k, BLOCK):  # one grid block at a time; its error reaches later blocks at once
        i2 = i1 + BLOCK
        W1, U1 = W[:, i1:i2], U[:, i1:i2, i1:i2]
        s, z = (t.view(b, n) for t in _grid(W1.transpose(0, 1).reshape(BLOCK, b * n), bits))
        scales[:, i1 // BLOCK], zeros[:, i1 // BLOCK] = s, z
        for i in range(BLOCK):
            w = W1[:, i]
            level = (w / s).round_().add_(z).clamp_(0, qmax)
            q[:, i1 + i] = level
            err = (w - (level - z) * s).div_(U1[:, i, i, None])
            W1[:, i + 1:].addcmul_(U1[:, i, i + 1:, None], err[:, None, :], value=-1)
            E[:, i] = err
        loss += E.square().sum(1)
        if i2 < k:
            W[:, i2:].baddbmm_(U[:, i1:i2, i2:].transpose(1, 2), E, alpha=-1)
    return q, scales, zeros.to(torch.uint8), loss


def gptq(weight: np.ndarray, hessian: np.ndarray | None, bits: int, *, damp: float = 0.01) -> BlockQuantized:
    """Quantize ``weight`` (``[K, N]``, ONNX ``MatMul`` layout) with GPTQ. ``hessian`` is ``X^T X``
    (``[K, K]``) of the calibration inputs; ``None`` (or the identity) gives round-to-nearest
    with the same grid search, since no error is then carried to other columns."""
    import torch

    k, _ = weight.shape
    W = torch.tensor(weight, dtype=torch.float32)[None]
    H = torch.eye(k, dtype=torch.float64) if hessian is None else torch.tensor(hessian, dtype=torch.float64)
    q, s, z, _ = _gptq_batch(W, H[None], bits, damp)
    return BlockQuantized(q[0].T.contiguous().numpy(), s[0].T.contiguous().numpy(), z[0].T.contiguous().numpy(),
                          bits)


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


# -- calibration: the PyTorch model ------------------------------------------------------------------

@dataclass
class Calibrated:
    """What GPTQ needs of one graph ``MatMul``, named as the model builder names it."""

    weight: Any  # [N, K] float32 torch tensor (PyTorch's layout: rows = outputs)
    hessian: Any  # [K, K] float64 X^T X; the same object for matrices that read the same input
    output_sq: float  # |X W^T|^2: the squared outputs on the calibration tokens


_LINEAR = re.compile(r"^model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+_proj)$")
"""transformers' names of the projections the builder turns into ``/model/layers.N/{attn,mlp}/...``."""


def _node_name(module: str) -> str | None:
    m = _LINEAR.match(module)
    if m is None:
        return None
    return f"/model/layers.{m[1]}/{'attn' if m[2] == 'self_attn' else 'mlp'}/{m[3]}/MatMul"


def calibrate(hf_dir: Path, sequences: Sequence[Sequence[int]], progress: Progress | None = None
              ) -> dict[str, Calibrated]:
    """Run the token ``sequences`` through the float32 PyTorch model in ``hf_dir`` and return, for
    every decoder projection by its graph ``MatMul`` name, its weight and the ``X^T X`` of its
    input over the real (unpadded) tokens. The builder's fused ``qkv_proj`` gets q|k|v."""
    import torch

    from tunery.compiled.scorers import load_torch

    model = load_torch(hf_dir).model
    names = {m: node for n, m in model.named_modules() if (node := _node_name(n))}
    hessians: dict[int, Any] = {}  # float64, by the module first seen with that input
    found: dict[str, tuple[Any, int]] = {}  # node name -> (module, key of its Hessian)
    out_sq: dict[str, float] = {}
    lock = threading.Lock()
    local = threading.local()  # per worker: its batch's real positions, the last input and its key

    def hook(module: Any, args: tuple[Any, ...], output: Any) -> None:
        x = args[0]
        if x is not local.last:  # q/k/v (and gate/up) read the same tensor: one Hessian for them
            flat = x.reshape(-1, x.shape[-1])[local.rows]
            h = flat.T @ flat
            local.last, local.key = x, id(module)
            with lock:
                if local.key in hessians:
                    hessians[local.key] += h
                else:
                    hessians[local.key] = h.double()
        y = output.reshape(-1, output.shape[-1])[local.rows]
        sq = float(y.double().square().sum())
        with lock:
            found[names[module]] = (module, local.key)
            out_sq[names[module]] = out_sq.get(names[module], 0.0) + sq

    decoder = model.get_decoder()  # the LM head's logits are not needed

    def run(batch: list[int]) -> None:
        width = len(sequences[batch[0]])
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, i in enumerate(batch):
            ids[r, :len(sequences[i])] = torch.tensor(list(sequences[i]))
            mask[r, :len(sequences[i])] = 1
        local.rows, local.last, local.key = mask.reshape(-1).bool(), None, -1
        with torch.inference_mode():
            decoder(input_ids=ids, attention_mask=mask, use_cache=False)

    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    batches: list[list[int]] = []
    for i in order:  # longest first, so each batch pads little
        if batches and (len(batches[-1]) + 1) * len(sequences[batches[-1][0]]) <= BATCH_TOKENS:
            batches[-1].append(i)
        else:
            batches.append([i])
    handles = [m.register_forward_hook(hook) for m in names]
    try:
        with _workers() as (pool, _):
            for j, f in enumerate(as_completed([pool.submit(run, b) for b in batches])):
                f.result()
                say(progress, f"calibrating: {j + 1}/{len(batches)} batches of chats through the PyTorch model")
    finally:
        for h in handles:
            h.remove()
    out = {name: Calibrated(module.weight.detach().float(), hessians[key], out_sq[name])
           for name, (module, key) in found.items()}
    for attn in {n.rpartition("/")[0].rpartition("/")[0] for n in out if "/attn/" in n}:
        parts = [out.get(f"{attn}/{p}_proj/MatMul") for p in "qkv"]
        if all(parts) and len({id(p.hessian) for p in parts}) == 1:
            out[f"{attn}/qkv_proj/MatMul"] = Calibrated(torch.cat([p.weight for p in parts]), parts[0].hessian,
                                                        sum(p.output_sq for p in parts))
    return out


_threads_lock = threading.Lock()
_threads_users = 0
_threads_saved = 1


@contextmanager
def _workers() -> Iterator[tuple[ThreadPoolExecutor, int]]:
    """A pool of as many workers as torch has threads, each running its tensor operations on one
    thread. The calibration forward and GPTQ's column loop are many small and medium operations:
    split per operation across threads, each waits for the slowest thread, which on a busy 2-core
    machine took 2-4x the wall time of two workers on separate batches.

    torch's thread count is process-wide: the first of overlapping callers (two builds in one
    server) saves it and the last restores it; meanwhile other torch work in the process runs on
    one thread."""
    import torch

    global _threads_users, _threads_saved
    with _threads_lock:
        if _threads_users == 0:
            _threads_saved = torch.get_num_threads()
            torch.set_num_threads(1)
        _threads_users += 1
        threads = _threads_saved
    try:
        with ThreadPoolExecutor(threads) as pool:
            yield pool, threads
    finally:
        with _threads_lock:
            _threads_users -= 1
            if _threads_users == 0:
                torch.set_num_threads(_threads_saved)


# -- the graph -------------------------------------------------------------------------------------

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


def _quantize(jobs: list[tuple[str, Calibrated, int]], progress: Progress | None
              ) -> dict[str, tuple[BlockQuantized, float]]:
    """GPTQ of every ``(node name, source, bits)``, with each node's relative output error
    ``|X dW| / |X W|``. Matrices sharing a Hessian go as one taller matrix, and those of the same
    shape and bits (the same role in every layer) as one batch."""
    import torch

    stacks: dict[tuple[int, int], list[tuple[str, Calibrated, int]]] = {}
    for job in jobs:
        stacks.setdefault((id(job[1].hessian), job[2]), []).append(job)
    batches: dict[tuple[int, ...], list[list[tuple[str, Calibrated, int]]]] = {}
    for stack in stacks.values():
        shape = tuple(c.weight.shape[0] for _, c, _ in stack) + (stack[0][1].weight.shape[1], stack[0][2])
        batches.setdefault(shape, []).append(stack)
    def run(stacks: list[list[tuple[str, Calibrated, int]]], bits: int) -> None:
        W = torch.stack([torch.cat([c.weight for _, c, _ in stack]).T for stack in stacks])  # [B, K, N]
        H = torch.stack([stack[0][1].hessian for stack in stacks])
        q, s, z, loss = _gptq_batch(W, H, bits)
        for b, stack in enumerate(stacks):
            at = 0
            for name, c, _ in stack:
                part = slice(at, at + c.weight.shape[0])
                bq = BlockQuantized(*(t[b, :, part].T.contiguous().numpy() for t in (q, s, z)), bits)
                out[name] = (bq, (float(loss[b, part].sum()) / max(c.output_sq, 1e-30)) ** 0.5)
                at = part.stop

    out: dict[str, tuple[BlockQuantized, float]] = {}
    with _workers() as (pool, threads):
        for i, (shape, group) in enumerate(batches.items()):
            *rows, k, bits = shape
            names = [name.split("/")[-2] for name, _, _ in group[0]]
            say(progress, f"GPTQ {bits}-bit: batch {i + 1}/{len(batches)}, {len(group)} x {'+'.join(names)} "
                          f"[{'+'.join(map(str, rows))}, {k}]")
            shares = [group[j::threads] for j in range(threads) if group[j::threads]]
            for f in [pool.submit(run, share, bits) for share in shares]:
                f.result()
    return out


def requantize(int_dir: Path, hf_dir: Path, sequences: Sequence[Sequence[int]],
               progress: Progress | None = None) -> GptqSummary:
    """Replace the weights of every ``MatMulNBits`` node of the model builder's int4 graph in
    ``int_dir`` by GPTQ's, computed from the PyTorch model in ``hf_dir`` (the builder's node names
    less the ``_Q4``/``_Q8`` suffix), fuse the nodes that read the same input, and rewrite
    ``int_dir/model.onnx``."""
    import onnx

    sources = calibrate(hf_dir, sequences, progress)
    model = onnx.load(str(int_dir / "model.onnx"))
    shared = _shared_with_lookups(model)
    kept: list[str] = []
    jobs: list[tuple[str, Calibrated, int]] = []
    nodes: dict[str, Any] = {}
    for node in (n for n in model.graph.node if n.op_type == "MatMulNBits"):
        base = re.sub(r"_Q\d+$", "", node.name)
        src = None if node.input[1] in shared else sources.get(base)
        attrs = {a.name: a.i for a in node.attribute if a.type == a.INT}
        if src is None or tuple(src.weight.shape) != (attrs["N"], attrs["K"]) or attrs["K"] % BLOCK:
            kept.append(node.name)
            continue
        jobs.append((base, src, 8 if EIGHT_BIT.search(base) else 4))
        nodes[base] = node
    results = _quantize(jobs, progress)
    done = [(nodes[base], base, results[base][0]) for base, _, _ in jobs]  # graph order
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
    errors = [err for _, err in results.values()]
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
