"""The process-wide engine manager: which engine serves which model, chat templates, context
checks, and the ``n`` choices of one request.

One engine per set of base weights: a base model and all of its LoRA fine-tunes (and their
checkpoints) share it, a full fine-tune gets its own. Engines load on first use and the least
recently used idle one is unloaded when more than ``TUNERY_MAX_ENGINES`` (default 2) are loaded.
The server, ``tunery chat`` and in-process flows and evaluators all go through :func:`manager`,
so they share the same weights in memory.

Engines other than PyTorch plug in by name: a registered model whose ``meta["engine"]`` is, say,
``"onnx"`` is served by the factory given to :func:`register_engine`.
"""

from __future__ import annotations

import atexit
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tunery.chat import ChatMessage
from tunery.errors import InvalidInput
from tunery.models import registry
from tunery.models.registry import ModelRecord
from tunery.serving.base import GenerationParams
from tunery.serving.engine import Adapter, Delta, Engine, EngineRequest

EngineFactory = Callable[[ModelRecord], Engine]
"""Builds an engine for a base model's record."""


def _torch_engine(rec: ModelRecord) -> Engine:
    from tunery.export.runtime import env_threads
    from tunery.models.loading import load_tokenizer, stop_token_ids
    from tunery.serving.torch_engine import TorchEngine

    threads = env_threads()
    if threads:  # else torch's own default, one thread per core
        import torch

        torch.set_num_threads(threads)
    # its own tokenizer: the engine thread decodes while request threads encode
    tokenizer = load_tokenizer(rec)
    return TorchEngine(rec.path, tokenizer, stop_token_ids(tokenizer, rec.path), name=rec.id,
                       max_batch=int(os.environ.get("TUNERY_MAX_BATCH", "16")))


_FACTORIES: dict[str, EngineFactory] = {"torch": _torch_engine}


def register_engine(kind: str, factory: EngineFactory) -> None:
    """Serve models whose ``meta["engine"] == kind`` with ``factory`` (e.g. the ONNX Runtime engine)."""
    _FACTORIES[kind] = factory


def _discover(kind: str) -> EngineFactory | None:
    """By convention ``tunery.serving.<kind>_engine`` registers itself from ``install()``; its
    heavy imports (onnxruntime, vllm) happen only when a model needs that engine."""
    import importlib
    import importlib.util
    import re

    module = f"tunery.serving.{kind}_engine"
    if not re.fullmatch(r"[a-z][a-z0-9_]*", kind) or importlib.util.find_spec(module) is None:
        return None
    try:
        installer = getattr(importlib.import_module(module), "install", None)
    except ImportError:  # the engine's own dependency (say, onnxruntime-genai) is not installed
        return None
    if installer is not None:
        installer()
    return _FACTORIES.get(kind)


@dataclass(frozen=True)
class Target:
    """A resolved model: the engine holding its weights, the adapter to apply, its tokenizer."""

    record: ModelRecord
    engine: Engine
    adapter: Adapter | None
    tokenizer: Any
    context_length: int


def _adapter_for(rec: ModelRecord) -> Adapter | None:
    if not rec.is_adapter:
        return None
    weights = next((p for p in (rec.path / "adapter_model.safetensors", rec.path / "adapter_model.bin")
                    if p.exists()), None)
    if weights is None:
        raise InvalidInput(f"model {rec.id!r} has no adapter weights in {rec.path}", param="model",
                           hint="the fine-tune's files are missing; remove it with `tunery models remove`")
    # the file's mtime in the key: an adapter rewritten in place is reloaded, not served stale
    return Adapter(key=f"{rec.path}@{weights.stat().st_mtime_ns}", path=rec.path)


class EngineManager:
    spare_s = 30.0  # an engine used this recently is never unloaded

    def __init__(self, max_engines: int | None = None) -> None:
        self.max_engines = max_engines or int(os.environ.get("TUNERY_MAX_ENGINES", "2"))
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._last_used: dict[str, float] = {}
        self._tokenizers: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.RLock()
        self._encode_lock = threading.Lock()  # fast tokenizers are not safe to call from two threads

    def target(self, model: str) -> Target:
        """Resolve a model or checkpoint name; loads its engine on first use."""
        rec = registry.get(model)
        base = registry.get(rec.parent) if rec.is_adapter and rec.parent else rec
        if not base.path.exists():
            raise InvalidInput(f"the weights of model {base.id!r} are missing at {base.path}", param="model",
                               hint=f"pull or add it again (`tunery models pull {base.id}`)")
        adapter = _adapter_for(rec)
        tokenizer = self._tokenizer(rec)
        engine = self._engine(base)
        return Target(rec, engine, adapter, tokenizer, min(rec.context_length, engine.context_length))

    def _tokenizer(self, rec: ModelRecord) -> Any:
        from tunery.models.loading import load_tokenizer

        key = str(rec.path)
        with self._lock:
            tok = self._tokenizers.get(key)
            if tok is None:
                tok = self._tokenizers[key] = load_tokenizer(rec)
                while len(self._tokenizers) > 16:
                    self._tokenizers.popitem(last=False)
            self._tokenizers.move_to_end(key)
            return tok

    def _engine(self, base: ModelRecord) -> Engine:
        kind = str(base.meta.get("engine") or "torch")
        factory = _FACTORIES.get(kind) or _discover(kind)
        if factory is None:
            raise InvalidInput(f"model {base.id!r} needs the {kind!r} engine, which is not available",
                               param="model", hint=f"install the extra that provides the {kind} engine")
        key = f"{kind}:{base.path}"
        with self._lock:
            engine = self._engines.get(key)
            if engine is None:
                self._unload_idle(keep=self.max_engines - 1)
                engine = self._engines[key] = factory(base)
            self._engines.move_to_end(key)
            self._last_used[key] = time.monotonic()
            return engine

    def _unload_idle(self, keep: int) -> None:
        # an engine handed out a moment ago may not have its request yet: spare it too
        recent = time.monotonic() - self.spare_s
        for key in list(self._engines):
            if len(self._engines) <= max(0, keep):
                return
            if not self._engines[key].busy() and self._last_used.get(key, 0) < recent:
                self._engines.pop(key).close()
                self._last_used.pop(key, None)

    def encode(self, target: Target, messages: Sequence[ChatMessage]) -> list[int]:
        """The prompt's token ids through the model's chat template; refuses a prompt that does not
        fit the context (never cut silently)."""
        if not messages:
            raise InvalidInput("messages must not be empty", param="messages")
        tok = target.tokenizer
        with self._encode_lock:
            text = tok.apply_chat_template([{"role": m.role.value, "content": m.content} for m in messages],
                                           add_generation_prompt=True, tokenize=False)
            ids = list(tok(text, add_special_tokens=False)["input_ids"])
        if len(ids) >= target.context_length:
            raise InvalidInput(f"this model's maximum context length is {target.context_length} tokens, but "
                               f"the messages take {len(ids)} tokens and leave no room for an answer",
                               param="messages", code="context_length_exceeded",
                               hint="shorten the messages")
        return ids

    def submit(self, target: Target, prompt_ids: list[int], params: GenerationParams,
               emit: Callable[[Delta], None], *, ignore_eos: bool = False) -> list[EngineRequest]:
        """Start ``params.n`` choices; every ``Delta`` goes to ``emit`` tagged with its choice index."""
        room = target.context_length - len(prompt_ids)
        max_tokens = room if params.max_tokens is None else min(params.max_tokens, room)
        seed = params.seed if params.seed is not None else secrets.randbits(63)
        requests = [EngineRequest(prompt_ids=prompt_ids, max_tokens=max_tokens, emit=emit,
                                  temperature=params.temperature, top_p=params.top_p, seed=seed + i,
                                  stop=params.stop, adapter=target.adapter, index=i, ignore_eos=ignore_eos)
                    for i in range(max(1, params.n))]
        for r in requests:
            target.engine.submit(r)
        return requests

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._engines)

    def close(self) -> None:
        with self._lock:
            while self._engines:
                self._engines.popitem()[1].close()
            self._tokenizers.clear()


_manager: EngineManager | None = None
_manager_lock = threading.Lock()
_atexit_hooked = False


def manager() -> EngineManager:
    """The process-wide manager (created on first use)."""
    global _manager, _atexit_hooked
    with _manager_lock:
        if _manager is None:
            _manager = EngineManager()
            if not _atexit_hooked:
                # stop engine threads before the interpreter tears torch down under them
                atexit.register(shutdown)
                _atexit_hooked = True
        return _manager


def shutdown() -> None:
    """Unload every engine (tests, and the end of ``tunery serve``)."""
    global _manager
    with _manager_lock:
        if _manager is not None:
            _manager.close()
            _manager = None

