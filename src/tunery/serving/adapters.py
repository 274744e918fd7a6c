"""LoRA adapters attached to one copy of a base model's weights.

The base weights are loaded once; each fine-tune is a named adapter beside them, loaded on first
use and evicted least-recently-used when there are too many or free memory runs short
(:class:`AdapterPool`, the policy; an engine's subclass loads and unloads). In the PyTorch engine
(:class:`PeftAdapters`) a batch may mix adapters: PEFT routes each row through its own adapter
(``adapter_names``) and rows of the base model through none. All methods run on the engine's
thread, between forward passes, because loading and deleting adapters mutates the model in place.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import Counter, OrderedDict
from itertools import count
from pathlib import Path
from typing import Any

from tunery.errors import InvalidInput
from tunery.serving.engine import Adapter

log = logging.getLogger(__name__)

BASE = "__base__"  # PEFT's name for "no adapter" in a mixed batch


def available_memory() -> int | None:
    """Bytes the kernel says can be allocated without swapping (None where unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def return_freed_memory() -> None:
    """Hand the C heap's free pages back to the kernel (glibc's ``malloc_trim``; a no-op where
    there is none). Converting and loading an adapter allocates and frees tens of megabytes in
    pieces; without this the freed pieces stay resident, a few MiB per adapter served."""
    import ctypes
    import ctypes.util

    global _trim
    if _trim is None:
        try:
            _trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _trim = False
    if _trim:
        _trim(0)


_trim: Any = None


class AdapterPool:
    """Which adapters are loaded, in least-recently-used order, and which are in use by a row.
    Subclasses say how one is loaded (:meth:`_load`) and unloaded (:meth:`_unload`)."""

    def __init__(self, *, max_adapters: int | None = None, min_free_bytes: int | None = None) -> None:
        self.max_adapters = max_adapters or int(os.environ.get("TUNERY_MAX_ADAPTERS", "8"))
        self.min_free_bytes = (min_free_bytes if min_free_bytes is not None
                               else int(os.environ.get("TUNERY_MIN_FREE_MB", "256")) * 2**20)
        self._loaded: OrderedDict[str, str] = OrderedDict()  # adapter key -> PEFT name, oldest first
        self._in_use: Counter[str] = Counter()
        self._names = count()

    @property
    def loaded(self) -> list[str]:
        return list(self._loaded)

    def acquire(self, adapter: Adapter | None) -> str:
        """The PEFT name to route a row through, loading the adapter on first use."""
        if adapter is None:
            return BASE
        name = self._loaded.get(adapter.key)
        if name is None:
            name = f"a{next(self._names)}"
            self._load(adapter, name)
            self._loaded[adapter.key] = name
            # evict only after the new one loaded: PEFT cannot be left with no adapter at all
            self._make_room(keep=adapter.key)
            return_freed_memory()
        self._loaded.move_to_end(adapter.key)
        self._in_use[name] += 1
        return name

    def release(self, name: str) -> None:
        if name != BASE:
            self._in_use[name] -= 1
            if self._in_use[name] <= 0:
                del self._in_use[name]

    def _load(self, adapter: Adapter, name: str) -> None:
        raise NotImplementedError

    def _unload(self, name: str) -> None:
        raise NotImplementedError

    def _make_room(self, keep: str) -> None:
        idle = [k for k, n in self._loaded.items() if k != keep and not self._in_use.get(n)]
        while idle and (len(self._loaded) > self.max_adapters or self._memory_short()):
            key = idle.pop(0)
            try:
                self.evict(key)
            except Exception:  # the runtime still holds it: keep it listed, try again next time
                log.warning("could not unload LoRA adapter %s", key, exc_info=True)

    def _memory_short(self) -> bool:
        free = available_memory()
        return free is not None and free < self.min_free_bytes

    def evict(self, key: str) -> None:
        name = self._loaded[key]
        log.info("evicting LoRA adapter %s (%s)", key, name)
        self._unload(name)  # first: if the runtime refuses, the pool still lists it
        del self._loaded[key]


def check_adapter_folder(path: Path) -> None:
    if not (Path(path) / "adapter_config.json").exists():
        raise InvalidInput(f"{path} is not a LoRA adapter folder (no adapter_config.json)", param="model")


class PeftAdapters(AdapterPool):
    """Adapters injected into a PyTorch model by PEFT."""

    def __init__(self, model: Any, **kw: Any) -> None:
        super().__init__(**kw)
        self.base = model
        self.peft: Any = None

    @property
    def model(self) -> Any:
        """The module to call: the PEFT wrapper once an adapter was ever loaded, else the base."""
        return self.peft if self.peft is not None else self.base

    def forward_kwargs(self, names: list[str]) -> dict[str, Any]:
        return {"adapter_names": names} if self.peft is not None else {}

    def _memory_short(self) -> bool:
        """On a GPU, adapters take the GPU's memory: its free bytes decide, not the host's. Those
        include what PyTorch holds cached but unused (an evicted adapter's, past batches'), which
        the driver counts as taken: else one eviction never shows, and every idle adapter goes."""
        device = next(self.base.parameters()).device
        if device.type != "cuda":
            return super()._memory_short()
        import torch

        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return torch.cuda.mem_get_info(device)[0] + cached < self.min_free_bytes

    def _load(self, adapter: Adapter, name: str) -> None:
        import torch
        from peft import PeftModel

        check_adapter_folder(adapter.path)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PEFT's deprecation chatter from transformers
            if self.peft is None:
                self.peft = PeftModel.from_pretrained(self.base, str(adapter.path), adapter_name=name,
                                                      is_trainable=False)
            else:
                self.peft.load_adapter(str(adapter.path), adapter_name=name, is_trainable=False)
        self.peft.eval()

    def _unload(self, name: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "adapter was active, setting another": expected here
            self.peft.delete_adapter(name)
