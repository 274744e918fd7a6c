"""The ONNX Runtime engine, the fast path: an ONNX decoder served through onnxruntime-genai's
generator loop, behind the same engine contract as the PyTorch engine (``tunery.serving.engine``).
It serves a base model's compiled copy (``tunery.compiled.cache``, the default for every model,
its LoRA fine-tunes as adapters) and registered exports (``tunery export MODEL --format onnx``)
through the engine manager; ``OnnxChatModel`` serves an export folder an app embeds, with no
registry, through the same prompt, ``max_tokens`` and streaming path (``Target`` and ``ChatRun``).

Batching: requests waiting when a batch starts, or arriving within ``TUNERY_BATCH_WINDOW_MS``
(25 ms) of the last one to join it, at most :data:`WINDOW_CAP` windows after the first, are decoded
together, right-padded, in one onnxruntime-genai generator (one forward pass per step for all
rows); requests that arrive later wait for the next batch (onnxruntime-genai accepts a batch's
prompts only once, so there is no joining a running batch). The window costs a lone request 25 ms
and lets clients that start together (a page of parallel calls, an eval run) share one batch. It
restarts with each request that joins because the server admits a burst one request at a time
(each resolved, rendered and tokenized first), often over more than 25 ms; a request that missed
its batch waited for all of it (benchmarks/RESULTS.md, issue 16). So while requests keep coming
less than a window apart, the first of them waits up to :data:`WINDOW_CAP` windows (200 ms) before
its batch starts, and a request for another adapter that is held meanwhile waits that and the
batch. Finished rows ride along until the batch ends, their tokens ignored.

Adapters: a compiled base (``tunery.compiled.cache``) has LoRA inputs, and each LoRA fine-tune of
it is an onnxruntime-genai adapter (:class:`OnnxAdapters`: converted on first use, loaded into
one ``og.Adapters``, least recently used unloaded). A generator has one active adapter, so a batch
holds the requests of one adapter (or of the base): the oldest waiting request picks it, others of
the same adapter join, the rest wait in order for a later batch.

Sampling: greedy rows are left to onnxruntime-genai's own argmax (the fast path). When a row
samples, every row's next token is chosen here from the step's logits, each from its own
``numpy`` generator seeded from the request, and handed back to the generator as a one-hot logit
row, so a row's random draws never depend on who shares the batch (as in the PyTorch engine).
Batched or alone: a row's tokens are the ones it gets alone, on the base and through an adapter
(tests/serving/test_smollm2.py): the int8 ``MatMulNBits`` kernels compute each row on its own, and
an adapter's float32 side path gets one extra row so that a lone decode row runs the kernel a batch
runs (``tunery.compiled.lora``, layout 3; before it, 1 to 5 of 8 adapter answers matched their lone
runs over 32 tokens). So a seeded or greedy answer does not depend on who shares its batch, as far
as ONNX Runtime's CPU kernels give every row of two or more the same sums (the tests check it on
the machine they run on).
SmolLM2's pad id is its end-of-turn id, which chat prompts hold inside them: onnxruntime-genai
takes only trailing pad tokens for padding (such prompts answer batched as alone), so a prompt
must not end with the pad id; every chat prompt ends with the generation prompt.

Constraints: a request with a grammar (``tunery.serving.constrained``) makes its batch choose
tokens here too, its row's logits masked by its own matcher, so rows of different grammars (or
none) share a batch. So does a request with a ``logit_bias`` or penalties, its row adjusted before
any mask (``tunery.serving.penalties``). (onnxruntime-genai's own guidance takes one grammar per generator.)

Log-probabilities: a batch with a request that asked for them reads each step's logits (as a
sampling batch does; its greedy rows still take onnxruntime-genai's own argmax) and scores that
request's rows of them, unmasked (``tunery.serving.logprobs``).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tunery.errors import InvalidInput
from tunery.models.registry import ModelRecord
from tunery.runtime import genai_model
from tunery.serving.adapters import AdapterPool, check_adapter_folder
from tunery.serving.constrained import Guide
from tunery.serving.engine import (
    CLOSE,
    Adapter,
    Delta,
    EngineRequest,
    IncrementalDecoder,
    StopText,
    ThreadedEngine,
    drain,
    token_text,
)
from tunery.serving.local import EngineChatModel
from tunery.serving.logprobs import AnswerLogprobs, Scored, score, vocab
from tunery.serving.manager import Target
from tunery.serving.penalties import Penalties, penalties

if TYPE_CHECKING:
    from tunery.compiled.cache import CompiledBase

log = logging.getLogger(__name__)

GREEDY_BELOW = 1e-5
WINDOW_CAP = 8
"""A batch waits for more requests at most this many batch windows after its first one."""


def sample_token(logits: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator) -> int:
    """One token from one row of logits with temperature and nucleus (top-p) filtering."""
    x = logits.astype(np.float64) / temperature
    p = np.exp(x - x.max())
    p /= p.sum()
    if top_p < 1.0:
        order = np.argsort(-p)
        sp = p[order]
        keep = (np.cumsum(sp) - sp) < top_p
        keep[0] = True  # top_p=0 still keeps the most likely token
        sp = sp * keep
        return int(order[rng.choice(len(sp), p=sp / sp.sum())])
    return int(rng.choice(len(p), p=p))


@dataclass
class _Row:
    req: EngineRequest
    decoder: IncrementalDecoder
    stop: StopText
    rng: np.random.Generator
    guide: Guide | None = None
    scores: AnswerLogprobs | None = None  # for a request that asked for log-probabilities
    penalties: Penalties | None = None  # for a request with a logit_bias or penalties
    generated: int = 0
    done: bool = False


class OnnxAdapters(AdapterPool):
    """LoRA fine-tunes as onnxruntime-genai adapters over a compiled base with LoRA inputs."""

    def __init__(self, model: Any, compiled: CompiledBase, **kw: Any) -> None:
        import onnxruntime_genai as og

        super().__init__(**kw)
        self.compiled = compiled
        self.og = og.Adapters(model)

    def _load(self, adapter: Adapter, name: str) -> None:
        check_adapter_folder(adapter.path)
        # converted in a child process: what conversion imports does not stay in the server
        self.og.load(str(self.compiled.adapter_file(adapter.path, adapter.key, isolated=True)), name)

    def _unload(self, name: str) -> None:
        self.og.unload(name)


def _adapter_key(req: EngineRequest) -> str | None:
    return req.adapter.key if req.adapter is not None else None


class OnnxEngine(ThreadedEngine):
    """Serves one ONNX model folder from a background thread (the ``Engine`` contract): an export,
    or a compiled base and its LoRA fine-tunes (``compiled``)."""

    def __init__(self, folder: Path, tokenizer: Any, stop_ids: Sequence[int], *, max_batch: int = 8,
                 name: str = "", compiled: CompiledBase | None = None) -> None:
        try:
            import onnxruntime_genai as og
        except ImportError as e:
            raise InvalidInput("serving an ONNX export needs onnxruntime-genai", param="model",
                               hint="pip install onnxruntime-genai") from e
        self.folder = Path(folder)
        if not (self.folder / "genai_config.json").exists():
            raise InvalidInput(f"{self.folder} is not an ONNX export (no genai_config.json)", param="model",
                               hint="create one with `tunery export MODEL --format onnx -o DIR`")
        self.name = name or self.folder.name
        self.tokenizer = tokenizer
        self.stop_ids = frozenset(int(i) for i in stop_ids)
        self.max_batch = max(1, max_batch)
        cfg = json.loads((self.folder / "genai_config.json").read_text())["model"]
        self.context_length = int(cfg.get("context_length") or 2048)
        self.pad_id = int(cfg.get("pad_token_id", 0) if not isinstance(cfg.get("pad_token_id"), list)
                          else cfg["pad_token_id"][0])
        eos = cfg.get("eos_token_id")
        eos = eos if isinstance(eos, list) else [] if eos is None else [eos]
        self._generator_eos = frozenset(int(i) for i in eos)  # what onnxruntime-genai's min_length holds back
        self._og = og
        self.model = genai_model(self.folder)
        self.adapters = OnnxAdapters(self.model, compiled) if compiled is not None else None
        self._held: deque[EngineRequest] = deque()  # taken from the inbox, waiting for their adapter's turn
        self.tokens_generated = 0  # a running total, for monitoring
        self.batch_window_s = float(os.environ.get("TUNERY_BATCH_WINDOW_MS", "25")) / 1000
        self._start(f"tunery-onnx-{self.name}")

    def _active(self) -> bool:
        return bool(self._held)

    # -- the loop -------------------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while True:
                item = self._held.popleft() if self._held else self._inbox.get()
                if item is CLOSE:
                    break
                self._working = True
                batch, closing = self._gather(item)
                try:
                    self._run(batch)
                except Exception as e:
                    log.exception("ONNX generation failed on %s", self.name)
                    for req in batch:
                        req.emit(Delta(req.index, error=e))
                self._working = False
                if closing:
                    break
        finally:
            self._fail_all(RuntimeError("the engine was closed"))

    def _gather(self, first: EngineRequest) -> tuple[list[EngineRequest], bool]:
        """``first`` and the waiting requests of the same adapter (held ones first, in order); the
        inbox's others are held for a later batch. Also says whether ``CLOSE`` came."""
        key, batch = _adapter_key(first), [first]
        for other in list(self._held):
            if len(batch) >= self.max_batch:
                break
            if _adapter_key(other) == key:
                self._held.remove(other)
                batch.append(other)
        start = time.monotonic()
        deadline = start + self.batch_window_s
        while len(batch) < self.max_batch:
            try:
                nxt = self._inbox.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if nxt is CLOSE:
                return batch, True
            if _adapter_key(nxt) != key:
                self._held.append(nxt)
                continue
            batch.append(nxt)
            # each request that joins restarts the window, within the cap: a burst arrives spread out
            deadline = min(time.monotonic() + self.batch_window_s, start + WINDOW_CAP * self.batch_window_s)
        return batch, False

    def _fail_all(self, error: BaseException) -> None:
        while self._held:
            req = self._held.popleft()
            req.emit(Delta(req.index, error=error))

    def _run(self, batch: list[EngineRequest]) -> None:
        rows = []
        for req in batch:
            if req.cancelled.is_set():
                req.emit(Delta(req.index, error=RuntimeError("cancelled")))
                continue
            try:
                guide = (Guide(req.grammar, self.tokenizer, self.stop_ids, gate=req.call_gate)
                         if req.grammar else None)
            except Exception as e:
                req.emit(Delta(req.index, error=e))
                continue
            scores = AnswerLogprobs(vocab(self.tokenizer), req.logprobs) if req.logprobs is not None else None
            rows.append(_Row(req=req, decoder=IncrementalDecoder(self.tokenizer), stop=StopText(req.stop),
                             rng=np.random.default_rng(int(req.seed) & 0xFFFF_FFFF_FFFF_FFFF), guide=guide,
                             scores=scores, penalties=penalties(req)))
        if not rows:
            return
        adapter = rows[0].req.adapter
        if adapter is not None and self.adapters is None:
            raise InvalidInput(f"{self.name} is an export without LoRA inputs: it cannot apply an adapter",
                               param="model")
        name = self.adapters.acquire(adapter) if adapter is not None and self.adapters is not None else None
        try:
            self._generate(rows, name)
        except Exception as e:
            # without its traceback: that would keep the generator, and so the adapter it holds, alive
            raise e.with_traceback(None) from None
        finally:
            if name is not None and self.adapters is not None:
                self.adapters.release(name)

    def _generate(self, rows: list[_Row], adapter: str | None) -> None:
        og = self._og
        width = max(len(r.req.prompt_ids) for r in rows)
        budget = max(r.req.max_tokens for r in rows)
        max_length = min(self.context_length, width + budget)
        # greedy rows that all ignore end-of-turn: onnxruntime-genai's min_length holds it back, which
        # spares choosing every token here (~15% of a batch of 8's decode speed)
        hold_eos = (all(r.req.ignore_eos and r.req.temperature <= GREEDY_BELOW and r.guide is None
                        and r.penalties is None for r in rows)
                    and self.stop_ids <= self._generator_eos)
        params = og.GeneratorParams(self.model)
        params.set_search_options(max_length=max_length, min_length=max_length if hold_eos else 0,
                                  do_sample=False, batch_size=len(rows))
        gen = og.Generator(self.model, params)
        if adapter is not None and self.adapters is not None:
            gen.set_active_adapter(self.adapters.og, adapter)
        if len(rows) == 1:
            gen.append_tokens(np.array(rows[0].req.prompt_ids, dtype=np.int32))
        else:
            # right-padded: the builder's GroupQueryAttention reads each row's length from the mask
            # and expects its tokens first; left padding made a shorter row attend to the pads
            gen.append_tokens(np.array([list(r.req.prompt_ids) + [self.pad_id] * (width - len(r.req.prompt_ids))
                                        for r in rows], dtype=np.int32))
        choose = not hold_eos and any(r.req.temperature > GREEDY_BELOW or r.req.ignore_eos or r.guide is not None
                                      or r.penalties is not None for r in rows)
        scoring = any(r.scores is not None for r in rows)
        while not all(r.done for r in rows):
            if gen.is_done():
                for r in rows:
                    if not r.done:
                        self._finish(r, "length")
                break
            # the logits the next token is chosen from, read only when a row needs them
            logits = (np.asarray(gen.get_logits(), dtype=np.float32).reshape(len(rows), -1)
                      if choose or scoring else None)
            if choose:
                self._force_choices(gen, rows, logits)
            gen.generate_next_token()
            tokens = gen.get_next_tokens()
            for i, r in enumerate(rows):
                if r.done:
                    continue
                if r.req.cancelled.is_set():
                    r.done = True
                    r.req.emit(Delta(r.req.index, completion_tokens=r.generated, error=RuntimeError("cancelled")))
                    continue
                token = int(tokens[i])
                scored = score(logits[i], token, r.req.logprobs) if r.scores is not None else None
                self._advance(r, token, width, scored)

    def _force_choices(self, gen: Any, rows: list[_Row], logits: np.ndarray) -> None:
        forced = np.full_like(logits, -1e9)
        for i, r in enumerate(rows):
            row = logits[i]
            if (r.penalties is not None or r.guide is not None) and not r.done:
                row = row.copy()
                if r.penalties is not None:  # before the grammar: its mask has the last word
                    r.penalties.apply(row)
                if r.guide is not None:
                    r.guide.apply(row, logits[i])
            elif r.req.ignore_eos and self.stop_ids:
                row = row.copy()
                row[[t for t in self.stop_ids if t < row.shape[0]]] = -np.inf
            if r.done or r.req.temperature <= GREEDY_BELOW:
                token = int(row.argmax())
            else:
                token = sample_token(row, r.req.temperature, r.req.top_p, r.rng)
            forced[i, token] = 0.0
        gen.set_logits(forced)

    def _advance(self, r: _Row, token: int, width: int, scored: Scored | None = None) -> None:
        req = r.req
        r.generated += 1
        self.tokens_generated += 1
        if r.penalties is not None:
            r.penalties.add(token)
        if r.guide is not None:
            try:
                r.guide.consume(token)
            except RuntimeError as e:  # this row's failure, not the batch's
                r.done = True
                req.emit(Delta(req.index, completion_tokens=r.generated, error=e))
                return
        # a constrained answer ends where its grammar allows the end-of-turn token, ignore_eos or not
        text, finish = token_text(r.decoder, r.stop, token,
                                  end_of_turn=token in self.stop_ids and (not req.ignore_eos or r.guide is not None),
                                  at_limit=r.generated >= req.max_tokens or width + r.generated >= self.context_length,
                                  scores=r.scores, scored=scored)
        logprobs = r.scores.take(r.stop) if r.scores is not None else ()
        if finish is not None:
            r.done = True
            req.emit(Delta(req.index, text, r.generated, finish, logprobs=logprobs))
        elif text or logprobs:
            req.emit(Delta(req.index, text, r.generated, logprobs=logprobs))

    def _finish(self, r: _Row, reason: str) -> None:
        r.done = True
        text = drain(r.decoder, r.stop, r.scores)
        r.req.emit(Delta(r.req.index, text, r.generated, reason,
                         logprobs=r.scores.take(r.stop) if r.scores is not None else ()))


def onnx_engine_factory(rec: ModelRecord, *, max_batch: int | None = None) -> OnnxEngine:
    """The engine factory for ``tunery.serving.manager.register_engine("onnx", ...)``: serves a
    model whose ``path`` is an ONNX model folder and ``meta["engine"] == "onnx"``: an export, or a
    base's compiled copy (``meta["compiled"]``), whose LoRA fine-tunes it then serves as adapters."""
    from tunery.compiled.cache import CompiledBase
    from tunery.models.loading import load_tokenizer, stop_token_ids

    compiled = CompiledBase.at(rec.path) if rec.meta.get("compiled") else None
    # the engine thread decodes while request threads encode: the light tokenizer is shared (its Rust
    # tokenizer never changes after loading); transformers' own is loaded per engine
    tokenizer = load_tokenizer(rec, light=True)
    name = f"{rec.id}@{compiled.precision}" if compiled is not None else rec.id
    return OnnxEngine(rec.path, tokenizer, stop_token_ids(tokenizer, rec.path), name=name, compiled=compiled,
                      max_batch=max_batch or int(os.environ.get("TUNERY_MAX_BATCH", "8")))


def install() -> None:
    """Make the process-wide engine manager serve ``meta["engine"] == "onnx"`` models."""
    from tunery.serving.manager import register_engine

    register_engine("onnx", onnx_engine_factory)


class OnnxChatModel(EngineChatModel):
    """An ONNX export folder as a ChatModel, with no registry or server in between: what an app
    embeds to run a model on-device. It owns its engine; :meth:`close` stops it."""

    def __init__(self, folder: str | Path, *, name: str | None = None, max_batch: int = 8) -> None:
        from tunery.models.loading import load_tokenizer

        folder = Path(folder).expanduser()
        self.name = name or folder.name
        # a record that is never registered: what the engine factory and the tokenizer loader take
        rec = ModelRecord(id=self.name, kind="base", path=folder, source="folder", meta={"engine": "onnx"})
        try:
            tokenizer = load_tokenizer(rec, light=True)
        except (OSError, ValueError) as e:
            raise InvalidInput(f"cannot read the tokenizer in {folder}: {e}", param="model") from e
        self.engine = onnx_engine_factory(rec, max_batch=max_batch)
        self._target = Target(rec, self.engine, None, tokenizer, self.engine.context_length)

    def target(self) -> Target:
        return self._target

    def close(self) -> None:
        self.engine.close()

    def __repr__(self) -> str:
        return f"OnnxChatModel({str(self._target.record.path)!r})"
