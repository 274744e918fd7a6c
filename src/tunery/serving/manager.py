"""The process-wide engine manager (which engine serves which model) and ``Target``, a model
resolved to an engine: the one place where a chat request becomes engine requests (chat template,
context check, ``max_tokens``, the ``n`` choices), whether the target came from the registry or
from an export folder an app embeds (``tunery.serving.onnx_engine.OnnxChatModel``).

One engine per set of base weights and way of serving them (``compiled-int8``, ``torch``...): a
base model and all of its LoRA fine-tunes (and their checkpoints) share it, a full fine-tune gets
its own; so does, with a second compiled copy (``compiled-int8+all``), a LoRA fine-tune that adapts
layers outside the base's default LoRA. Engines load on first use and the least
recently used idle one is unloaded when more than ``TUNERY_MAX_ENGINES`` (default 2) are loaded.
The server, ``tunery chat`` and in-process flows and evaluators all go through :func:`manager`,
so they share the same weights in memory.

Which engine: by default the fast path, the base's compiled copy (``tunery.compiled.cache``: a
quantized ONNX graph built once per base, LoRA fine-tunes as adapters over it) in the ONNX Runtime
engine, at the precision asked for (``precision``, a deployment's, ``TUNERY_PRECISION``, else
int8). ``fp32`` is the PyTorch engine; full fine-tunes and models the ONNX builder cannot take go
there too, and their ``Target`` says so in one line (``notice``). Engines other than these plug
in by name: a registered model whose ``meta["engine"]`` is, say, ``"onnx"`` (an export) is served
by the factory given to :func:`register_engine`.
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tunery.chat import ChatMessage, GenerationParams
from tunery.compiled.cache import COMPILED_PRECISIONS
from tunery.errors import InvalidInput
from tunery.models import registry
from tunery.models.registry import ModelRecord
from tunery.models.stack import on_root
from tunery.progress import Progress
from tunery.serving.engine import Adapter, Delta, Engine, EngineRequest

log = logging.getLogger(__name__)

EngineFactory = Callable[[ModelRecord], Engine]
"""Builds an engine for a base model's record."""


def _torch_engine(rec: ModelRecord) -> Engine:
    from tunery.models.loading import load_tokenizer, stop_token_ids
    from tunery.runtime import env_threads
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


_encode_lock = threading.Lock()  # fast tokenizers are not safe to call from two threads


@dataclass(frozen=True)
class Target:
    """A resolved model: the engine holding its weights, the adapter to apply, its tokenizer (for
    encoding; the engine decodes with its own) and the context length it is served with."""

    record: ModelRecord
    engine: Engine
    adapter: Adapter | None
    tokenizer: Any
    context_length: int
    precision: str = "fp32"
    """What serves it: ``int8``/``int4`` (a compiled copy), ``fp32`` (PyTorch), ``export``."""
    notice: str | None = None
    """One line for the user when the model is not served the way they asked (a fallback)."""

    def encode(self, messages: Sequence[ChatMessage], tools: list[dict[str, Any]] | None = None) -> list[int]:
        """The prompt's token ids through the model's chat template (with ``tools``, OpenAI function
        specs, when given); refuses a prompt that does not fit the context (never cut silently)."""
        from tunery.chat_template import prompt_ids

        if not messages:
            raise InvalidInput("messages must not be empty", param="messages")
        if len(messages) >= self.context_length:
            # every message takes a token at least: refused before templating and tokenizing, whose
            # time and memory grow with the conversation (100,000 messages took gigabytes)
            raise InvalidInput(f"this model's maximum context length is {self.context_length} tokens, but "
                               f"the {len(messages):,} messages take at least one token each and leave no "
                               "room for an answer", param="messages", code="context_length_exceeded",
                               hint="send fewer messages")
        with _encode_lock:
            ids = prompt_ids(self.tokenizer, messages, tools=tools)
        if len(ids) >= self.context_length:
            raise InvalidInput(f"this model's maximum context length is {self.context_length} tokens, but "
                               f"the messages take {len(ids)} tokens and leave no room for an answer",
                               param="messages", code="context_length_exceeded",
                               hint="shorten the messages")
        return ids

    def max_new_tokens(self, prompt_ids: list[int], params: GenerationParams) -> int:
        """The ``max_tokens`` rule: an answer gets at most ``params.max_tokens`` new tokens and never
        more than the context has room for after the prompt (all that room when ``max_tokens`` is
        None), and at least 1 (the engines always generate one token; :meth:`encode` guarantees
        the room)."""
        room = self.context_length - len(prompt_ids)
        return max(1, room if params.max_tokens is None else min(params.max_tokens, room))

    def submit(self, prompt_ids: list[int], params: GenerationParams, emit: Callable[[Delta], None], *,
               ignore_eos: bool = False) -> list[EngineRequest]:
        """Start ``params.n`` choices (choice ``i`` samples with seed + i), each of at most
        :meth:`max_new_tokens`; every ``Delta`` goes to ``emit`` tagged with its choice index."""
        bias = params.token_bias()
        if bias and (past := max(bias)) >= len(self.tokenizer):
            raise InvalidInput(f"logit_bias names token {past}, past this model's vocabulary of "
                               f"{len(self.tokenizer)} tokens (ids 0-{len(self.tokenizer) - 1})", param="logit_bias")
        max_tokens = self.max_new_tokens(prompt_ids, params)
        from tunery.serving.constrained import call_gate, grammar

        gate = call_gate(params, self.record.meta.get("tool_call_threshold"))
        seed = params.seed if params.seed is not None else secrets.randbits(63)
        rules = grammar(params)
        requests = [EngineRequest(prompt_ids=prompt_ids, max_tokens=max_tokens, emit=emit,
                                  temperature=params.temperature, top_p=params.top_p, seed=seed + i,
                                  stop=params.stop, adapter=self.adapter, index=i, ignore_eos=ignore_eos,
                                  grammar=rules, call_gate=gate, logprobs=params.top_logprobs if params.logprobs else None,
                                  logit_bias=bias or None, presence_penalty=params.presence_penalty,
                                  frequency_penalty=params.frequency_penalty)
                    for i in range(max(1, params.n))]
        for r in requests:
            self.engine.submit(r)
        return requests


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


ALL_LAYERS = "+all"
COMPILED = {f"compiled-{p}{every}": p for p in COMPILED_PRECISIONS for every in ("", ALL_LAYERS)}
"""Engine kinds that serve a base's compiled copy, and its precision: ``compiled-int8`` is the copy
with LoRA side paths on the layers of the base's default LoRA (its catalog's ``lora_layers`` that
the model has; all when there are none: ``tunery.compiled.cache.default_copy_layers``),
``compiled-int8+all`` the copy with side paths on every layer, for a fine-tune that adapts layers
outside those (``tunery.compiled.cache.needs_every_layer``)."""


def copy_layers(kind: str, base: ModelRecord) -> tuple[int, ...] | None:
    """The layers with side paths in the compiled copy an engine of ``kind`` serves (None: all)."""
    from tunery.compiled.cache import default_copy_layers

    return None if kind.endswith(ALL_LAYERS) else default_copy_layers(base)


def route(rec: ModelRecord, base: ModelRecord, precision: str | None) -> tuple[str, str, str | None]:
    """(engine kind, precision served, notice) for ``rec`` running on ``base``'s weights."""
    from tunery.compiled.cache import check_precision, unsupported

    wanted = check_precision(precision)
    if base.meta.get("engine"):  # a registered export (or another engine's model): served as it is
        return str(base.meta["engine"]), "export", None
    if wanted == "fp32":
        return "torch", "fp32", None
    if rec.kind == "fine-tuned" and not rec.is_adapter:
        return "torch", "fp32", (f"{rec.id} is a full fine-tune: served in float32 by the PyTorch engine "
                                 f"(only LoRA fine-tunes run over a compiled {wanted} base)")
    why = unsupported(base.path) or (_adapter_facts(rec)[0] if rec.is_adapter else None)
    if why is not None:
        return "torch", "fp32", f"{rec.id} is served in float32 by the PyTorch engine: {why}"
    kind = f"compiled-{wanted}"
    if rec.is_adapter:
        from tunery.compiled.cache import default_copy_layers, needs_every_layer

        if needs_every_layer(default_copy_layers(base), _adapted_layers(rec, base)):
            kind += ALL_LAYERS  # it adapts layers the default copy has no side paths on
    return kind, wanted, None


def _adapted_layers(rec: ModelRecord, base: ModelRecord) -> frozenset[int] | None:
    """The layers ``rec``'s adapter and its LoRA ancestors up to ``base`` adapt: a checkpoint of a
    job from a LoRA fine-tune runs stacked onto that fine-tune (``tunery.models.stack.on_root``), so
    it needs side paths wherever either has weights. None when one of them cannot be read."""
    out: set[int] = set()
    seen = set()
    while rec.is_adapter and rec.id not in seen:
        seen.add(rec.id)
        layers = _adapter_facts(rec)[1]
        if layers is None:
            return None
        out |= layers
        if not rec.parent or rec.parent == base.id:
            break
        rec = registry.get(rec.parent)
    return frozenset(out)


_adapters: dict[tuple, tuple[str | None, frozenset[int] | None]] = {}


def _adapter_facts(rec: ModelRecord) -> tuple[str | None, frozenset[int] | None]:
    """Why a LoRA fine-tune cannot run as an ONNX adapter (None when it can), and the layers it
    adapts; remembered per folder and the mtimes of its config and weights."""
    from tunery.compiled.lora import adapter_layers, convertible

    stamp = (str(rec.path), *(f.stat().st_mtime_ns if f.exists() else 0
                              for f in (rec.path / "adapter_config.json", rec.path / "adapter_model.safetensors")))
    if stamp not in _adapters:
        _adapters[stamp] = (convertible(rec.path), adapter_layers(rec.path))
    return _adapters[stamp]


def serving_info(rec: ModelRecord, precision: str | None = None) -> dict[str, Any]:
    """How ``rec`` is served at ``precision`` (None: the default): the engine, the precision, the
    fallback notice if any and, for a compiled copy, its manifest's quality figures (None until
    the copy is built, on first use)."""
    from tunery.compiled.cache import find

    base = rec.root()
    kind, served, notice = route(rec, base, precision)
    info: dict[str, Any] = {"engine": "onnx" if kind in COMPILED else kind, "precision": served, "notice": notice,
                            "adapter_of": base.id if rec.is_adapter else None}
    if kind in COMPILED:
        built = (find(base.path, served, layers=copy_layers(kind, base), hash_unknown=False)
                 if base.path.exists() else None)
        m = built.manifest if built is not None else None
        info["compiled"] = None if m is None else {
            "folder": str(built.folder), "built_at": m.get("built_at"), "build_seconds": m.get("build_seconds"),
            "lora_layers": m.get("lora_layers"),
            "quality": m.get("quality"), "within_guard": m.get("within_guard"), "quality_guard": m.get("quality_guard")}
    return info


def describe_serving(info: dict[str, Any]) -> str:
    """One line for :func:`serving_info`, e.g. ``int8, compiled copy: loss +0.11% vs float32``."""
    if info.get("notice"):
        return info["notice"]
    if info["precision"] == "fp32":
        from tunery.runtime import default_device

        return "fp32 (PyTorch engine" + (", on the GPU)" if default_device() != "cpu" else ")")
    if info["precision"] == "export":
        return "an ONNX export, as exported"
    built = info.get("compiled")
    if not built:
        return f"{info['precision']}: the compiled copy of its base is built on first use (seconds)"
    q = built.get("quality") or {}
    guard = "" if built.get("within_guard") else f" - MORE than the {built.get('quality_guard', 0):.0%} guard"
    from tunery.compiled.cache import layer_spans

    layers = built.get("lora_layers")
    inputs = "adapter inputs on every layer" if layers is None else f"adapter inputs on layers {layer_spans(layers)}"
    what = (f"an adapter over the {info['precision']} copy of {info['adapter_of']} ({inputs}), whose"
            if info.get("adapter_of") else f"{info['precision']}, compiled copy ({inputs}):")
    return (f"{what} held-out loss {q.get('fp32_loss')} -> {q.get('loss')} "
            f"({q.get('loss_delta', 0):+.2%} vs float32{guard}), top-1 agreement {q.get('top1_agreement', 0):.0%}")


def _bring_back(base: ModelRecord) -> str:
    """How to get back the weights of ``base``, found missing: pulled again from where they came
    from, or, for a model added from a folder or GGUF file (``source`` ``local:PATH``, ``gguf:PATH``),
    that file put back, or the model removed and added again (``models add`` refuses a name in use)."""
    kind, _, origin = base.source.partition(":")
    if kind == "job" or base.source.startswith("checkpoint"):  # a full fine-tune's weights: only its job made them
        return (f"they were written by a fine-tuning job and cannot be fetched again: remove the model "
                f"(`tunery models remove {base.id}`) and fine-tune again")
    if base.source == "onnx-export":
        return (f"put the export folder back, or remove the model (`tunery models remove {base.id}`) and deploy "
                "the export's folder again (`tunery deploy DIR`)")
    if kind == "local":
        return (f"put the folder back, or remove the model (`tunery models remove {base.id}`) and add it again "
                f"from where it is now (`tunery models add {base.id} FOLDER`)")
    if kind == "gguf":
        return (f"remove the model (`tunery models remove {base.id}`) and add it again "
                f"(`tunery models add {base.id} {origin}`)")
    # a catalog model is pulled by its name; another one from the Hub, by its repository
    return f"pull it again (`tunery models pull {origin if kind == 'hf-hub' and base.spec is None else base.id}`)"


class EngineManager:
    """Engines and tokenizers by key, loaded on first use. The lock guards the tables only: a load
    (engine creation can take a minute) and the close of an unloaded engine (which may wait for
    its thread) happen outside it, so requests to loaded models never wait behind a cold one.
    Two requests for the same cold model share one load (:class:`_Loading`)."""

    spare_s = 30.0  # an engine used this recently is never unloaded

    def __init__(self, max_engines: int | None = None) -> None:
        self.max_engines = max_engines or int(os.environ.get("TUNERY_MAX_ENGINES", "2"))
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._last_used: dict[str, float] = {}
        self._tokenizers: OrderedDict[str, Any] = OrderedDict()
        self._loading_engines: dict[str, _Loading] = {}
        self._loading_tokenizers: dict[str, _Loading] = {}
        self._lock = threading.RLock()
        self._noticed: set[str] = set()

    def target(self, model: str, *, precision: str | None = None, progress: Progress | None = None) -> Target:
        """Resolve a model or checkpoint name at ``precision`` (see the module's docstring); loads
        its engine on first use, building the base's compiled copy first if there is none
        (``progress`` hears about it)."""
        named = registry.get(model)
        rec = on_root(named)  # a checkpoint continuing a LoRA fine-tune: both adapters as one
        base = registry.get(rec.parent) if rec.is_adapter and rec.parent else rec
        if not base.path.exists():
            raise InvalidInput(f"the weights of model {base.id!r} are missing at {base.path}", param="model",
                               hint=_bring_back(base))
        adapter = _adapter_for(rec)
        kind, served, notice = route(rec, base, precision)
        if notice and notice not in self._noticed:
            self._noticed.add(notice)
            log.warning("%s", notice)
        # a checkpoint's folder has its tokenizer files; the stacked folder in it does not
        tokenizer = self._tokenizer(named if (named.path / "tokenizer_config.json").exists() else rec)
        engine = self._engine(base, kind, progress)
        return Target(named, engine, adapter, tokenizer, min(named.context_length, engine.context_length), served,
                      notice)

    def _load_once(self, key: str, table: OrderedDict[str, Any], loads: dict[str, _Loading],
                   make: Callable[[], Any], before: Callable[[], list[Engine]] = list) -> Any:
        """``table[key]``, made by ``make`` if missing: by the first caller, outside the lock, while
        later callers for the same key wait for that load. ``before`` runs under the lock when a
        load starts and returns engines to close (outside the lock) first."""
        with self._lock:
            if key in table:
                table.move_to_end(key)
                return table[key]
            loading = loads.get(key)
            mine = loading is None
            if mine:
                loading = loads[key] = _Loading()
                victims = before()
        if not mine:
            return loading.wait()
        try:
            for engine in victims:
                engine.close()
            value = make()
        except BaseException as e:
            with self._lock:
                loads.pop(key, None)
            loading.fail(e)
            raise
        with self._lock:
            table[key] = value
            loads.pop(key, None)
        loading.done(value)
        return value

    def _tokenizer(self, rec: ModelRecord) -> Any:
        """The model's tokenizer, one instance per distinct set of tokenizer files: the many LoRA
        fine-tunes of a base, each saved with a copy of its files, share one (a tokenizer holds
        ~10 MB)."""
        from tunery.models.loading import load_tokenizer, tokenizer_key

        tok = self._load_once(tokenizer_key(rec), self._tokenizers, self._loading_tokenizers,
                              lambda: load_tokenizer(rec, light=True))
        with self._lock:
            while len(self._tokenizers) > 16:
                self._tokenizers.popitem(last=False)
        return tok

    def _engine(self, base: ModelRecord, kind: str, progress: Progress | None = None) -> Engine:
        engine_kind = "onnx" if kind in COMPILED else kind
        factory = _FACTORIES.get(engine_kind) or _discover(engine_kind)
        if factory is None:
            raise InvalidInput(f"model {base.id!r} needs the {engine_kind!r} engine, which is not available",
                               param="model", hint=f"install the extra that provides the {engine_kind} engine")

        def make() -> Engine:
            if kind not in COMPILED:
                return factory(base)
            from tunery.compiled.cache import ensure

            # the base's compiled copy, built first if missing, served as an ONNX model of its own
            compiled = ensure(base.path, COMPILED[kind], layers=copy_layers(kind, base), name=base.id,
                              progress=progress or (lambda line: log.info("%s", line)))
            return factory(replace(base, path=compiled.folder,
                                   meta={**base.meta, "engine": "onnx", "compiled": compiled.precision}))
        key = f"{kind}:{base.path}"
        # room for the new engine, counting the other loads in flight
        engine = self._load_once(key, self._engines, self._loading_engines, make,
                                 before=lambda: self._unload_idle(keep=self.max_engines - len(self._loading_engines)))
        with self._lock:
            self._last_used[key] = time.monotonic()
        return engine

    def _unload_idle(self, keep: int) -> list[Engine]:
        """Take idle engines out until at most ``keep`` are loaded; the caller closes them (under
        the lock: it returns them rather than close them here)."""
        # an engine handed out a moment ago may not have its request yet: spare it too
        recent = time.monotonic() - self.spare_s
        out = []
        for key in list(self._engines):
            if len(self._engines) <= max(0, keep):
                break
            if not self._engines[key].busy() and self._last_used.get(key, 0) < recent:
                out.append(self._engines.pop(key))
                self._last_used.pop(key, None)
        return out

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._engines)

    def close(self) -> None:
        with self._lock:
            engines = list(self._engines.values())
            self._engines.clear()
            self._last_used.clear()
            self._tokenizers.clear()
        for engine in engines:
            engine.close()


class _Loading:
    """One load in flight: the callers that did not start it wait here for its value or error."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None

    def done(self, value: Any) -> None:
        self._value = value
        self._event.set()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._event.set()

    def wait(self) -> Any:
        self._event.wait()
        if self._error is not None:
            raise self._error
        return self._value


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

