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

Not here yet: sharding (FSDP2's ``fully_shard``). Every rank holds the whole model, its gradients
and its optimizer state, so a full fine-tune that does not fit one process does not fit N.
"""

from __future__ import annotations

import atexit
import os
import sys
from dataclasses import dataclass
from typing import Any

NPROC_ENV = "TUNERY_NPROC_PER_NODE"
"""Training processes when a job does not say (``--nproc-per-node`` on ``tunery worker``); 1 unset."""


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


def setup(device: str) -> str:
    """Join the process group when launched with more than one rank (gloo on CPU, nccl on CUDA);
    returns the device this rank trains on (its own GPU under CUDA)."""
    import torch
    import torch.distributed as dist

    w = world()
    if w.size <= 1:
        return device
    if device.startswith("cuda"):
        torch.cuda.set_device(w.local_rank)
        device = f"cuda:{w.local_rank}"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        atexit.register(_close)
    return device


def _close() -> None:
    """Destroy the process group as the interpreter exits. Left alive, gloo's worker threads are
    still joinable when the C++ runtime tears down, and the process aborts ("terminate called
    without an active exception", SIGABRT) after a run that succeeded: seen in CI."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def finish() -> None:
    """Wait until every rank got here (rank 0 may still be writing the model). The process group
    is not destroyed but kept for the next run in this process: a group created anew under the
    same torchrun store could read the previous group's addresses before each rank replaced them
    (gloo's "Connection refused", seen when a process trained three times in a row)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shard(indices: list[int]) -> list[int]:
    """This rank's part of one global batch: every ``size``-th example from ``rank`` on, so the
    ranks together cover the batch exactly once."""
    w = world()
    return indices[w.rank::w.size] if active() else indices


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any (a cancel seen by rank 0 stops them all
    at the same step, so none waits on the others forever)."""
    if not active():
        return flag
    import torch
    import torch.distributed as dist

    t = torch.tensor([int(flag)], device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


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


def _comm_device() -> str:
    import torch
    import torch.distributed as dist

    return f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
