"""Checkpoints: a loadable adapter (or full model) plus everything needed to resume exactly:
optimizer, scheduler, RNG states, position in the data, and the metrics so far.

A checkpoint folder is written under a temporary name and renamed into place, so a folder named
``step-N`` is always whole; ``trainer_state.pt`` inside it is what marks it resumable."""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path
from typing import Any

from tunery.home import atomic_dir, atomic_write_json

STATE_FILE = "trainer_state.pt"
RESUME_ONLY = "resume-only"
"""A file in a checkpoint written only to go on from (a pause, mid-epoch): the next checkpoint
replaces it, so it never pushes an epoch's checkpoint out of the ``keep`` newest."""
_STEP_RE = re.compile(r"^step-(\d+)$")


def save_model(model: Any, out: Path, *, tokenizer: Any = None, weights: dict[str, Any] | None = None) -> None:
    """Adapter weights for a PEFT model, the whole model otherwise (safetensors); ``weights``: the
    state to write instead of the model's own (a sharded model's, gathered whole)."""
    model.save_pretrained(out, safe_serialization=True, **({"state_dict": weights} if weights is not None else {}))
    if tokenizer is not None:
        tokenizer.save_pretrained(out)


def save(root: Path, step: int, *, model: Any, tokenizer: Any, state: dict[str, Any],
         metrics: dict[str, Any], keep: int, weights: dict[str, Any] | None = None,
         resume_only: bool = False) -> Path:
    """Write the checkpoint of ``step`` whole, then keep the ``keep`` newest (0: all); ``resume_only``
    marks one written only to go on from (see :data:`RESUME_ONLY`), which this one replaces."""
    import torch

    final = root / f"step-{step}"
    with atomic_dir(final) as tmp:
        save_model(model, tmp, tokenizer=tokenizer, weights=weights)
        state = {**state, "rng": {"torch": torch.get_rng_state(), "python": random.getstate()}}
        torch.save(state, tmp / STATE_FILE)
        atomic_write_json(tmp / "metrics.json", {"step": step, **metrics})
        if resume_only:
            (tmp / RESUME_ONLY).touch()
    for old in [p for p in list_checkpoints(root) if p != final and (p / RESUME_ONLY).exists()]:
        shutil.rmtree(old, ignore_errors=True)
    # the keep newest of the checkpoints kept for good: a pause's is not counted, the next one replaces it
    for old in [p for p in list_checkpoints(root) if not (p / RESUME_ONLY).exists()][:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _STEP_RE.match(p.name)) and (p / STATE_FILE).exists()]
    return [p for _, p in sorted(found)]


def latest(root: Path) -> Path | None:
    cps = list_checkpoints(root)
    return cps[-1] if cps else None


def load_state(path: Path) -> dict[str, Any]:
    """The resume state, memory-mapped: tensors (the optimizer's moments) are read from the file
    only where they are used, so a sharded rank that keeps 1/N of each reads about 1/N of them."""
    import torch

    return torch.load(path / STATE_FILE, weights_only=False, mmap=True)


def restore_rng(state: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])
