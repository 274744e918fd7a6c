"""Data-parallel training across processes started by PyTorch's launcher (``torchrun``, i.e.
``python -m torch.distributed.run``): gloo on CPU, nccl on CUDA.

Every rank holds the whole model and walks the same global batches in the same order as one
process would (``batching.epoch_batches``); within each batch, rank ``r`` takes the examples at
positions ``r, r + N, r + 2N, ...``. Each rank scales its loss by the trained-token count of the
*whole* batch (every rank holds all the data, so it knows it without communicating), and after
the step's backward passes the gradients are summed across ranks: the sum is exactly the
single-process gradient, up to float rounding, so clipping and the optimizer step then give every
rank the same update. Reported metrics (loss sums, token counts) are summed the same way.

Why an explicit all-reduce and not ``DistributedDataParallel``: DDP's reducer fires on the backward
of a forward that went through its wrapper, and the trainer never calls the wrapped model: it
calls the decoder and the output head directly (``trainer.labelled_logits``), and with LoRA on the
upper layers it runs only those layers on the kept output of the frozen ones
(``training.frozen.packed_forward``). One coalesced all-reduce of the trainable gradients after
the last micro-batch is what DDP would do under ``no_sync`` for gradient accumulation, with one
communication per step, and it works on every path alike.

Rank 0 alone reports (callbacks), writes checkpoints and the final model; the other ranks run the
same steps silently. A checkpoint holds the full, unsharded state, so a run resumes from one
written by any number of ranks. Outside ``torchrun`` (no ``WORLD_SIZE`` in the environment, or 1)
everything here is a no-op and training is the plain single-process loop.

Sharding (``fsdp``, full fine-tunes only): with DDP-style training above, every rank holds the
whole model, its gradients and its optimizer state, so a full fine-tune that does not fit one
process does not fit N. With FSDP2 (:func:`shard_model`: ``fully_shard`` on each decoder layer and
on the root) each rank keeps 1/N of the weights, gradients and AdamW moments, and gathers a
layer's weights only while it runs. The data split, the loss scaling and the summed gradients are
the same as above (FSDP's reduce-scatter is told to sum, not average), so the run is still the
1-process run. Every rank must then make the same collective calls: each runs as many forward
passes as the busiest rank (:func:`most`; the others run an empty one), and checkpoints are
gathered tensor by tensor with every rank taking part (:func:`full_state`), rank 0 alone keeping
them, into the full, unsharded form a 1-process run writes, so a checkpoint written by N sharded
ranks resumes in one process and the other way round. ``auto`` (:func:`choose_sharding`) shards
only on CUDA, when the DDP copies would not fit a GPU's memory.

Choices every rank must share are made once: rank 0 decides (e.g. the training precision, which
``auto`` measures) and :func:`from_main` gives its answer to the rest.
"""

from __future__ import annotations

import atexit
import os
import sys
from dataclasses import dataclass
from typing import Any

NPROC_ENV = "TUNERY_NPROC_PER_NODE"
"""Training processes when a job does not say (``--nproc-per-node`` on ``tunery worker``); 1 unset."""

BYTES_PER_PARAM = 16
"""What full fine-tuning keeps per trainable parameter: the fp32 weight, its gradient and AdamW's
two moments."""
MEMORY_SHARE = 0.8
"""The part of the memory the ranks' copies share that ``auto`` lets them fill before it shards;
the rest is for activations and the runtime."""
_FORWARD = "tunery_forward"


@dataclass(frozen=True)
class World:
    """This process's place among the ranks, as ``torchrun`` sets it in the environment."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world() -> World:
    """The torchrun environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); one rank outside it."""
    env = os.environ
    return World(rank=int(env.get("RANK", 0)), size=int(env.get("WORLD_SIZE", 1)),
                 local_rank=int(env.get("LOCAL_RANK", 0)))


def is_main() -> bool:
    """Whether this process writes: rank 0, or the only process."""
    return world().is_main


def active() -> bool:
    """Whether a process group of more than one rank is up."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def threads(total: int) -> int:
    """CPU threads for this rank: the ranks of one machine share its ``total`` threads."""
    return max(1, total // int(os.environ.get("LOCAL_WORLD_SIZE", world().size)))


def default_nproc() -> int:
    """``TUNERY_NPROC_PER_NODE``, checked; 1 when unset."""
    from tunery.errors import InvalidInput

    env = os.environ.get(NPROC_ENV, "").strip() or "1"
    if not env.isdigit() or int(env) < 1:
        raise InvalidInput(f"{NPROC_ENV} must be a whole number of processes, at least 1; got {env!r}",
                           param=NPROC_ENV)
    return int(env)


def launch_command(args: list[str], nproc: int | None = None) -> list[str]:
    """The command line that runs ``python ARGS`` as ``nproc`` data-parallel ranks on this machine
    through PyTorch's own launcher (``nproc`` None: :func:`default_nproc`), or plainly for one."""
    n = nproc or default_nproc()
    if n <= 1:
        return [sys.executable, *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n), *args]


def check_devices(nproc: int | None = None) -> None:
    """Refuse more ranks than GPUs where there are GPUs: each rank trains on its own (``setup``),
    and a rank without one died in CUDA ("invalid device ordinal"). ``nproc`` None:
    :func:`default_nproc`. Ranks on a machine without CUDA share its CPUs (gloo) and are not
    limited here."""
    from tunery.errors import InvalidInput

    n = nproc or default_nproc()
    if n <= 1:
        return
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus and n > gpus:
        raise InvalidInput(f"{n} training processes need {n} GPUs, one each, and this machine has {gpus}",
                           param="nproc_per_node",
                           hint=f"ask for at most {gpus} (the job's nproc_per_node, --nproc-per-node or "
                                f"{NPROC_ENV}), or hide the GPUs from the worker that trains (CUDA_VISIBLE_DEVICES= tunery "
                                f"worker) to run {n} on the CPU")


def setup(device: str) -> str:
    """Join the process group when launched with more than one rank (gloo on CPU, nccl on CUDA);
    returns the device this rank trains on (its own GPU under CUDA)."""
    import torch
    import torch.distributed as dist

    w = world()
    if w.size <= 1:
        return device
    if device.startswith("cuda"):
        check_devices(int(os.environ.get("LOCAL_WORLD_SIZE") or w.size))  # torchrun's ranks on this machine
        torch.cuda.set_device(w.local_rank)
        device = f"cuda:{w.local_rank}"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        atexit.register(_close)
    global _clean
    _clean = False  # until this run reaches :func:`finish`
    return device


_clean = False
"""Whether every rank reached :func:`finish` after the last run: only then may exit destroy the group."""


def _close() -> None:
    """Destroy the process group as the interpreter exits, after a clean :func:`finish` only. Left
    alive, gloo's worker threads are still joinable when the C++ runtime tears down, and the process
    aborts ("terminate called without an active exception", SIGABRT) after a run that succeeded:
    seen in CI. After a failure the other ranks may be stuck in a collective, and destroying an
    NCCL group then can stall this process's exit: it is left to die with the process."""
    import torch.distributed as dist

    if _clean and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def finish() -> None:
    """Wait until every rank got here (rank 0 may still be writing the model). The process group
    is not destroyed but kept for the next run in this process: a group created anew under the
    same torchrun store could read the previous group's addresses before each rank replaced them
    (gloo's "Connection refused", seen when a process trained three times in a row)."""
    import torch.distributed as dist

    global _clean
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    _clean = True


def shard(indices: list[int]) -> list[int]:
    """This rank's part of one global batch: every ``size``-th example from ``rank`` on, so the
    ranks together cover the batch exactly once."""
    w = world()
    return indices[w.rank::w.size] if active() else indices


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any (a cancel seen by rank 0 stops them all
    at the same step, so none waits on the others forever)."""
    return bool(most(int(flag)))


def from_main(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (any picklable object): a choice rank 0 made alone, so that
    every rank follows it and they all make the same collective calls."""
    if not active():
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0, device=_comm_device())
    return box[0]


def most(n: int) -> int:
    """The largest of ``n`` across ranks."""
    if not active():
        return n
    import torch
    import torch.distributed as dist

    t = torch.tensor([n], device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def sum_all(*values: float) -> tuple[float, ...]:
    """Each value summed across ranks (float64, so token counts stay exact)."""
    if not active():
        return values
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return tuple(type(v)(r) for v, r in zip(values, t.tolist(), strict=True))


def sync_params(params: list[Any]) -> None:
    """Start every rank from rank 0's weights, as DDP does: seeded initialisation already makes
    them equal, this makes it certain."""
    if not active():
        return
    import torch.distributed as dist

    for p in params:
        dist.broadcast(p.data, src=0)


def all_reduce_grads(params: list[Any]) -> None:
    """Sum the trainable gradients across ranks, flattened into one buffer per dtype so the step
    communicates once. A rank whose share of the batch was empty contributes zeros."""
    if not active():
        return
    import torch
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    by_dtype: dict[Any, list[Any]] = {}
    for p in params:
        by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
    for grads in by_dtype.values():
        flat = _flatten_dense_tensors(grads)
        dist.all_reduce(flat)
        for g, reduced in zip(grads, _unflatten_dense_tensors(flat, grads), strict=True):
            g.copy_(reduced)


def clip_grad_norm(params: list[Any], max_norm: float) -> float:
    """The gradients' total L2 norm before clipping (reported as ``grad_norm``), after scaling them
    down to a norm of at most ``max_norm`` (0: no clipping), as ``torch.nn.utils.clip_grad_norm_``.
    Sharded gradients' norm is taken over the whole model, so every rank gets the same figure."""
    import torch

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    if not _is_dtensor(grads[0]):  # one process, or DDP: every rank holds whole, summed gradients
        if max_norm:
            return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.detach()) for g in grads])))
    total = torch.nn.utils.get_total_norm(grads).full_tensor()  # each rank's part, reduced across ranks
    if max_norm:
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return float(total)


def _is_dtensor(t: Any) -> bool:
    """Whether ``t`` is a sharded tensor; never on a torch without the public DTensor (before 2.5),
    which cannot shard (:func:`shard_model`) but trains unsharded all the same."""
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:
        return False
    return isinstance(t, DTensor)


def sharding_problem(sharding: str, *, method: str, objective: str) -> str | None:
    """Why ``sharding`` cannot train this method and objective, or None: ``fsdp`` shards full
    supervised fine-tunes only (LoRA's trainable weights are a few MB, and its frozen-layer path
    runs layers outside any wrapper; DPO trains in one process). The request (``jobs.spec``) and
    the trainer both ask here."""
    if sharding == "fsdp" and (method != "full" or objective != "supervised"):
        return ("sharding fsdp is for full supervised fine-tuning (training_method full): use sharding ddp or "
                "auto with " + ("LoRA" if method != "full" else "DPO"))
    return None


def choose_sharding(requested: str, *, method: str, objective: str, n_params: int, device: str) -> tuple[str, str]:
    """``ddp`` or ``fsdp``, and why (:func:`sharding_problem` refuses ``fsdp`` where it does not
    apply). ``auto`` shards on CUDA only, when the DDP copies of the weights, gradients and AdamW
    state (:data:`BYTES_PER_PARAM` a trainable parameter) would fill more than
    :data:`MEMORY_SHARE` of each GPU's memory. On CPU it never shards: there the measured resident
    memory of sharded ranks did not drop (benchmarks/RESULTS.md), and gloo is slow at gathering
    each layer's weights at every pass; the reason then says whether the copies fit the RAM (the
    container's limit where lower). Every rank gets the same answer."""
    from tunery.errors import InvalidInput

    problem = sharding_problem(requested, method=method, objective=objective)
    if problem:
        raise InvalidInput(problem, param="sharding")
    if not active():
        return "ddp", f"{requested} asked, one process: nothing to shard"
    if requested != "auto":
        return requested, f"{requested}: as asked"
    if method != "full" or objective != "supervised":
        return "ddp", "ddp: auto shards full supervised fine-tunes only"
    memory, copies = _shared_memory(device)
    need = copies * n_params * BYTES_PER_PARAM
    gib = f"{need / 2**30:.1f} GiB for {copies} cop{'y' if copies == 1 else 'ies'} of the weights, gradients and " \
          f"AdamW state, {memory / 2**30:.1f} GiB of {'GPU memory' if device.startswith('cuda') else 'RAM'}"
    too_big = any_rank(need > MEMORY_SHARE * memory)
    if not device.startswith("cuda"):
        return "ddp", (f"ddp (auto, CPU): {gib}" + ("; that may not fit, and sharding on CPU does not lower "
                                                     "resident memory" if too_big else ""))
    return ("fsdp", f"fsdp (auto): {gib}") if too_big else ("ddp", f"ddp (auto): {gib}")


def _shared_memory(device: str) -> tuple[int, int]:
    """Bytes of memory this rank's copy of the training state lives in, and how many ranks' copies
    share it: a GPU's own, or the machine's RAM (the container's limit where lower) for all its ranks."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_properties(torch.device(device)).total_memory, 1
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = container_memory_limit()
    return (min(ram, limit) if limit else ram), int(os.environ.get("LOCAL_WORLD_SIZE", world().size))


CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
"""The memory limit of this container: cgroup v2, then v1."""


def container_memory_limit(paths: tuple[str, ...] = CGROUP_LIMITS) -> int | None:
    """Bytes this process's container may use, or None without a limit ("max" in v2; v1 writes a
    huge number for none, which the caller's ``min`` with the RAM then ignores)."""
    for path in paths:
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit():
            return int(text)
        if text == "max":
            return None
    return None


def shard_model(model: Any, device: str) -> None:
    """FSDP2 across every rank, in place: ``fully_shard`` on each decoder layer, then on the root,
    whose group holds the rest (embeddings, final norm, output head: a tied head stays tied). Each
    parameter becomes a DTensor of which this rank keeps 1/N."""
    import torch
    from torch.distributed.device_mesh import init_device_mesh

    from tunery.errors import TuneryError
    from tunery.training.model import decoder_and_head

    try:  # the rest of training runs on older torch (pyproject's floor); sharding needs 2.8's FSDP2
        from torch.distributed.fsdp import FSDPModule, fully_shard, register_fsdp_forward_method
    except ImportError:
        FSDPModule = None
    if not hasattr(FSDPModule, "set_force_sum_reduction_for_comms"):
        raise TuneryError(f"sharding fsdp needs torch 2.8 or later (this is {torch.__version__})",
                          code="torch_too_old", hint="upgrade torch, or use sharding ddp")
    mesh = init_device_mesh(device.split(":")[0], (world().size,))
    decoder, _ = decoder_and_head(model)
    for layer in decoder.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    for m in model.modules():
        if isinstance(m, FSDPModule):
            # sum the gradients, as all_reduce_grads does (the loss is already scaled by the whole
            # batch's token count), with plain SUM: gloo has no PREMUL_SUM
            m.set_gradient_divide_factor(1.0)
            m.set_force_sum_reduction_for_comms(True)
    setattr(model, _FORWARD, lambda fn, *args, **kwargs: fn(*args, **kwargs))
    register_fsdp_forward_method(model, _FORWARD)


def as_forward(model: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` run as ``model``'s forward. The trainer calls the decoder and the
    output head itself, never ``model.forward`` (see ``trainer.labelled_logits``); on a sharded
    model the root's hooks must still run around that call, to gather the root's weights and to
    reduce their gradients after the backward pass. A plain call otherwise."""
    run = getattr(model, _FORWARD, None)
    return run(fn, *args, **kwargs) if run is not None else fn(*args, **kwargs)


def full_state(tree: Any) -> Any:
    """``tree`` (a model's ``state_dict(keep_vars=True)``, an optimizer's ``state_dict()``) with each
    sharded tensor gathered whole onto the CPU, on rank 0; None on the other ranks. Every rank must
    call it at the same point (each gather is a collective), but only rank 0 keeps what it gathers:
    the others drop each whole tensor at once, so they never hold more than one. A tensor met twice
    (a tied head) stays one."""
    import torch
    from torch.distributed.tensor import DTensor

    main = is_main()
    seen: dict[int, Any] = {}

    def walk(x: Any) -> Any:
        if isinstance(x, DTensor):
            if id(x) not in seen:
                with torch.no_grad():
                    whole = x.full_tensor()
                    seen[id(x)] = whole.cpu() if main else None
                    del whole
            return seen[id(x)]
        if isinstance(x, torch.Tensor):
            return x.detach()
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return type(x)(walk(v) for v in x)
        return x

    out = walk(tree)
    return out if main else None


def shard_state(optimizer_state: dict[str, Any], params: list[Any]) -> dict[str, Any]:
    """A full optimizer state (as one process saves it: per parameter index) cut into this rank's
    shards of the sharded ``params``, in the optimizer's order; unchanged for unsharded ones. Every
    rank reads the same checkpoint (memory-mapped: see ``checkpoint.load_state``), so each takes its
    own shard without communicating, and copies only that part out of the file."""
    if not any(_is_dtensor(p) for p in params):
        return optimizer_state
    from torch.distributed.tensor import DTensor, Shard, distribute_tensor

    def cut(p: Any, v: Any) -> Any:
        if not (isinstance(p, DTensor) and hasattr(v, "shape") and v.shape == p.shape):
            return v
        local = p.to_local()
        if len(p.placements) == 1 and isinstance(p.placements[0], Shard):  # FSDP2's: cut on the CPU, move the part
            dim, rank, n = p.placements[0].dim, p.device_mesh.get_local_rank(), p.device_mesh.size()
            chunks = v.chunk(n, dim=dim)
            part = chunks[rank] if rank < len(chunks) else v.narrow(dim, 0, 0)
            if part.shape == local.shape:
                return DTensor.from_local(part.to(p.device, copy=True).contiguous(), p.device_mesh, p.placements,
                                          run_check=False, shape=p.shape, stride=p.stride())
        return distribute_tensor(v.to(p.device), p.device_mesh, p.placements, src_data_rank=None)

    state = {i: {k: cut(params[int(i)], v) for k, v in s.items()} for i, s in optimizer_state["state"].items()}
    return {**optimizer_state, "state": state}


def _comm_device() -> str:
    import torch
    import torch.distributed as dist

    return f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
