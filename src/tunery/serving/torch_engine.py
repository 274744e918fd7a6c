"""The PyTorch engine: one copy of a Hugging Face causal LM, continuous batching over a shared
KV cache, and per-request sampling.

Requests that arrive while others are decoding join the running batch at the next step. New
prompts of similar length are prefilled together in one left-padded pass; the resulting KV cache
is left-padded to the batch's width (or the batch's to its) and stacked on, and from then on one
forward pass per step decodes every row. Rows carry their own RoPE positions and a 2-D attention
mask hides the padding. Finished rows leave the batch at once and all-padding columns are
trimmed away. Models whose cache cannot be stacked this way (sliding-window or linear-attention
layers) decode one request at a time.

Each request samples from its own ``torch.Generator`` seeded from the request, so the same seed
gives the same answer whoever it shares a batch with. A request with a grammar has its own
matcher (``tunery.serving.constrained.Guide``), which masks its row of each step's logits, so rows
of different constraints (or none) share a batch; a request's ``logit_bias`` and penalties adjust
its row before that (``tunery.serving.penalties``). A request that asked for log-probabilities has
its row of the raw logits scored at each step (``tunery.serving.logprobs``); other rows are not.
"""

from __future__ import annotations

import logging
import queue
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunery.serving.adapters import PeftAdapters
from tunery.serving.constrained import Guide
from tunery.serving.engine import (
    CLOSE,
    Delta,
    EngineRequest,
    IncrementalDecoder,
    StopText,
    ThreadedEngine,
    token_text,
)
from tunery.serving.logprobs import AnswerLogprobs, Scored, score, vocab
from tunery.serving.penalties import Penalties, penalties

log = logging.getLogger(__name__)

GREEDY_BELOW = 1e-5  # temperatures at or below this mean greedy decoding


def sample_token(logits: Any, temperature: float, top_p: float, gen: Any) -> int:
    """Sample one token id from one row of logits with nucleus (top-p) filtering."""
    import torch

    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p >= 1.0:
        return int(torch.multinomial(probs, 1, generator=gen))
    sorted_p, order = probs.sort(descending=True)
    keep = (sorted_p.cumsum(0) - sorted_p) < top_p
    keep[0] = True  # top_p=0 still keeps the most likely token
    return int(order[torch.multinomial(sorted_p * keep, 1, generator=gen)])


@dataclass
class _Row:
    req: EngineRequest
    adapter: str
    decoder: IncrementalDecoder
    stop: StopText
    gen: Any  # torch.Generator
    guide: Any = None  # tunery.serving.constrained.Guide, for a request with a grammar
    scores: AnswerLogprobs | None = None  # for a request that asked for log-probabilities
    penalties: Penalties | None = None  # for a request with a logit_bias or penalties
    pos: int = 0  # position of the next input token
    next_token: int = 0
    generated: int = 0
    done: bool = field(default=False)


class TorchEngine(ThreadedEngine):
    """Serves one base model (and its LoRA adapters) from a background thread."""

    def __init__(self, model_path: Path, tokenizer: Any, stop_ids: list[int], *, max_batch: int = 16,
                 max_adapters: int | None = None, name: str = "", device: str | None = None) -> None:
        from tunery.models.loading import load_base_model
        from tunery.runtime import default_device

        self.name = name or str(model_path)
        self.device = device or default_device()
        self.tokenizer = tokenizer
        self.stop_ids = frozenset(stop_ids)
        self.max_batch = max(1, max_batch)
        base = load_base_model(Path(model_path)).to(self.device)
        self.context_length = int(getattr(base.config, "max_position_embeddings", 0) or 2048)
        self.adapters = PeftAdapters(base, max_adapters=max_adapters)
        self._mergeable = _mergeable(base.config)
        self._attn = getattr(base.config, "_attn_implementation", None) or "sdpa"
        self._rows: list[_Row] = []
        self._cache: Any = None
        self._mask: Any = None  # [rows, cache length] 0/1
        self.tokens_generated = 0  # running totals, for monitoring
        self.prefill_passes = 0
        self._start(f"tunery-engine-{self.name}")

    def _active(self) -> bool:
        return bool(self._rows)

    # -- the loop -------------------------------------------------------------------------------

    def _loop(self) -> None:
        import torch

        while True:
            pending: list[EngineRequest] = []
            if not self._rows:
                item = self._inbox.get()
                if item is CLOSE:
                    break
                pending.append(item)
            self._working = True
            capacity = self.max_batch if self._mergeable else 1
            while len(self._rows) + len(pending) < capacity:
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if item is CLOSE:
                    self._fail_all(RuntimeError("the engine was closed"), pending)
                    return
                pending.append(item)
            if pending:
                self._admit(pending)
            self._drop_cancelled()
            if self._rows:
                try:
                    with torch.inference_mode():
                        self._step()
                except Exception as e:
                    log.exception("decode step failed on %s", self.name)
                    self._fail_all(e)
            self._working = False
        self._fail_all(RuntimeError("the engine was closed"))

    def _fail_all(self, error: BaseException, extra: list[EngineRequest] = ()) -> None:
        for row in self._rows:
            row.req.emit(Delta(row.req.index, completion_tokens=row.generated, error=error))
            self.adapters.release(row.adapter)
        for req in extra:
            req.emit(Delta(req.index, error=error))
        self._rows, self._cache, self._mask = [], None, None

    def _admit(self, pending: list[EngineRequest]) -> None:
        """Prefill new requests and add them to the running batch. Requests of similar prompt
        length are prefilled together; one that cannot start (say, a broken adapter) fails alone."""
        import torch

        rows = []
        for req in pending:
            if req.cancelled.is_set():
                req.emit(Delta(req.index, error=RuntimeError("cancelled")))
                continue
            try:
                guide = (Guide(req.grammar, self.tokenizer, self.stop_ids, gate=req.call_gate)
                         if req.grammar else None)
                name = self.adapters.acquire(req.adapter)
            except Exception as e:
                log.exception("cannot start a request on %s", self.name)
                req.emit(Delta(req.index, error=e))
                continue
            gen = torch.Generator().manual_seed(int(req.seed) & 0xFFFF_FFFF_FFFF_FFFF)
            scores = AnswerLogprobs(vocab(self.tokenizer), req.logprobs) if req.logprobs is not None else None
            rows.append(_Row(req=req, adapter=name, decoder=IncrementalDecoder(self.tokenizer),
                             stop=StopText(req.stop), gen=gen, pos=len(req.prompt_ids), guide=guide,
                             scores=scores, penalties=penalties(req)))
        for group in self._prefill_groups(rows):
            try:
                with torch.inference_mode():
                    self._prefill(group)
            except Exception as e:
                log.exception("prefill failed on %s", self.name)
                for row in group:
                    if not row.done:
                        row.done = True
                        self.adapters.release(row.adapter)
                        row.req.emit(Delta(row.req.index, error=e))
                self._compact()

    def _prefill_groups(self, rows: list[_Row]) -> list[list[_Row]]:
        """Rows whose prompts are close in length, so padding wastes little compute (at most
        a quarter, or 32 tokens a row). Other attention kernels than sdpa and eager get no
        custom mask, so their rows prefill one by one."""
        if self._attn not in ("sdpa", "eager"):
            return [[r] for r in rows]
        groups: list[list[_Row]] = []
        for row in sorted(rows, key=lambda r: len(r.req.prompt_ids)):
            group = groups[-1] if groups else None
            if group is not None:
                width = len(row.req.prompt_ids)
                real = sum(len(r.req.prompt_ids) for r in group) + width
                if width * (len(group) + 1) <= max(real * 1.25, real + 32 * (len(group) + 1)):
                    group.append(row)
                    continue
            groups.append([row])
        return groups

    def _prefill(self, group: list[_Row]) -> None:
        import torch
        from transformers import DynamicCache

        from tunery.models.loading import attention_mask

        lengths = [len(r.req.prompt_ids) for r in group]
        width = max(lengths)
        pad = self.tokenizer.pad_token_id or 0
        input_ids = torch.tensor([[pad] * (width - n) + r.req.prompt_ids for r, n in zip(group, lengths, strict=True)],
                                 device=self.device)
        mask = torch.tensor([[0] * (width - n) + [1] * n for n in lengths], device=self.device)
        kwargs: dict[str, Any] = {}
        if min(lengths) < width:
            # left padding with an explicit mask: causal, padding hidden, and every position sees at
            # least itself, so a padding row never attends to nothing (which would be NaN)
            idx = torch.arange(width, device=self.device)
            allowed = (idx[None, :] <= idx[:, None])[None] & mask.bool()[:, None, :]
            allowed |= torch.eye(width, dtype=torch.bool, device=self.device)[None]
            kwargs = {"attention_mask": attention_mask(allowed[:, None], self.adapters.base.config,
                                                       self.adapters.base.dtype),
                      "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)}
        cache = DynamicCache(config=self.adapters.base.config)
        if self._mergeable:
            cache.layers = [growing_layer() for _ in cache.layers]
        self.prefill_passes += 1
        out = self.adapters.model(input_ids=input_ids, cache=cache, use_cache=True, logits_to_keep=1,
                                  **kwargs, **self.adapters.forward_kwargs([r.adapter for r in group]))
        tokens, scored = self._sample(group, out.logits[:, -1, :])
        self._merge(out.cache, mask)
        self._rows.extend(group)
        for row, token, s in zip(group, tokens, scored, strict=True):
            self._advance(row, token, s)
        self._compact()

    def _merge(self, cache: Any, mask: Any) -> None:
        """Stack prefilled rows' cache onto the batch, left-padding the narrower side."""
        import torch
        import torch.nn.functional as F

        if self._cache is None:
            self._cache, self._mask = cache, mask
            return
        width, length = self._mask.shape[1], mask.shape[1]
        if length < width:
            for layer in cache.layers:
                layer.keys = F.pad(layer.keys, (0, 0, width - length, 0))
                layer.values = F.pad(layer.values, (0, 0, width - length, 0))
            mask = F.pad(mask, (width - length, 0))
        elif length > width:
            for layer in self._cache.layers:
                layer.keys = F.pad(layer.keys, (0, 0, length - width, 0))
                layer.values = F.pad(layer.values, (0, 0, length - width, 0))
            self._mask = F.pad(self._mask, (length - width, 0))
        for mine, theirs in zip(self._cache.layers, cache.layers, strict=True):
            mine.keys = torch.cat([mine.keys, theirs.keys])
            mine.values = torch.cat([mine.values, theirs.values])
        self._mask = torch.cat([self._mask, mask])

    def _step(self) -> None:
        import torch

        rows = self._rows
        input_ids = torch.tensor([[r.next_token] for r in rows], device=self.device)
        position_ids = torch.tensor([[r.pos] for r in rows], device=self.device)
        self._mask = torch.cat([self._mask, torch.ones(len(rows), 1, dtype=torch.long, device=self.device)], dim=1)
        # a lone row has no padding: no mask lets attention take its plain causal path
        mask = self._mask if len(rows) > 1 else None
        out = self.adapters.model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids,
                                  cache=self._cache, use_cache=True,
                                  **self.adapters.forward_kwargs([r.adapter for r in rows]))
        tokens, scored = self._sample(rows, out.logits[:, -1, :])
        for row, token, s in zip(rows, tokens, scored, strict=True):
            row.pos += 1
            self._advance(row, token, s)
        self._compact()

    def _sample(self, rows: list[_Row], logits: Any) -> tuple[list[int], list[Scored | None]]:
        """Each row's next token, and its scores for the rows that asked (None for the others).
        Picked on the CPU: the grammar, penalties and each row's generator live there, and a step's
        logits (rows x vocabulary) are little to copy from a GPU; on the CPU nothing is copied."""
        raw = logits = logits.float().cpu()
        steered = [i for i, row in enumerate(rows) if row.guide is not None or row.penalties is not None]
        if steered:
            logits = logits.clone()
            for i in steered:
                view = logits[i].numpy()  # a view: adjusts and masks the tensor in place
                if rows[i].penalties is not None:
                    rows[i].penalties.apply(view)
                if rows[i].guide is not None:
                    rows[i].guide.apply(view, raw[i].numpy())
        greedy = logits.argmax(dim=-1).tolist()
        tokens = [greedy[i] if row.req.temperature <= GREEDY_BELOW
                  else sample_token(logits[i], row.req.temperature, row.req.top_p, row.gen)
                  for i, row in enumerate(rows)]
        scored = [score(raw[i].numpy(), tokens[i], row.req.logprobs)
                  if row.req.logprobs is not None else None for i, row in enumerate(rows)]
        return tokens, scored

    def _advance(self, row: _Row, token: int, scored: Scored | None = None) -> None:
        """Account for one sampled token: send its text, or finish the row."""
        req = row.req
        row.generated += 1
        self.tokens_generated += 1
        row.next_token = token
        if row.penalties is not None:
            row.penalties.add(token)
        if row.guide is not None:
            try:
                row.guide.consume(token)
            except RuntimeError as e:  # this row's failure, not the batch's
                row.done = True
                self.adapters.release(row.adapter)
                req.emit(Delta(req.index, completion_tokens=row.generated, error=e))
                return
        # a constrained answer ends where its grammar allows the end-of-turn token, ignore_eos or not
        text, finish = token_text(row.decoder, row.stop, token,
                                  end_of_turn=token in self.stop_ids and (not req.ignore_eos or row.guide is not None),
                                  at_limit=row.generated >= req.max_tokens or row.pos + 1 >= self.context_length,
                                  scores=row.scores, scored=scored)
        logprobs = row.scores.take(row.stop) if row.scores is not None else ()
        if finish is not None:
            row.done = True
            self.adapters.release(row.adapter)
            req.emit(Delta(req.index, text, row.generated, finish, logprobs=logprobs))
        elif text or logprobs:
            req.emit(Delta(req.index, text, row.generated, logprobs=logprobs))

    def _drop_cancelled(self) -> None:
        for row in self._rows:
            if row.req.cancelled.is_set() and not row.done:
                row.done = True
                self.adapters.release(row.adapter)
                row.req.emit(Delta(row.req.index, completion_tokens=row.generated,
                                   error=RuntimeError("cancelled")))
        self._compact()

    def _compact(self) -> None:
        """Drop finished rows from the batch, then the columns that are padding in every row."""
        import torch

        keep = [i for i, r in enumerate(self._rows) if not r.done]
        if len(keep) == len(self._rows):
            return
        self._rows = [self._rows[i] for i in keep]
        if not keep:
            self._cache, self._mask = None, None
            return
        index = torch.tensor(keep, device=self.device)
        self._cache.batch_select_indices(index)
        self._mask = self._mask[index]
        first = int(self._mask.any(dim=0).nonzero()[0])
        if first > 0:
            for layer in self._cache.layers:
                layer.keys = layer.keys[:, :, first:, :]
                layer.values = layer.values[:, :, first:, :]
            self._mask = self._mask[:, first:]


def _mergeable(config: Any) -> bool:
    """Whether rows can share one cache: true for plain full-attention layers. Sliding-window or
    linear-attention layers keep state our left-padding merge does not model, so such models
    decode one request at a time."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    layers = DynamicCache(config=config).layers
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


def _growing_layer_class():
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        """A KV cache layer with spare room at the end: a decode step writes one column in place
        instead of copying the whole cache (``torch.cat``), which took ~6% of a single-stream step.
        Keys and values read as views of the filled part; assigning them (as the engine's merge,
        trim and row selection do) replaces the buffer."""

        SPARE = 64

        def __init__(self) -> None:
            self._buf: dict[str, Any] = {"keys": None, "values": None}
            self._len = {"keys": 0, "values": 0}
            super().__init__()

        def _get(self, which: str):
            b = self._buf[which]
            return b if b is None or b.dim() != 4 else b[:, :, :self._len[which]]

        def _set(self, which: str, value) -> None:
            self._buf[which] = value
            self._len[which] = value.shape[-2] if value is not None and value.dim() == 4 else 0

        keys = property(lambda self: self._get("keys"), lambda self, v: self._set("keys", v))
        values = property(lambda self: self._get("values"), lambda self, v: self._set("values", v))

        def update(self, key_states, value_states, *args, **kwargs):
            import torch

            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            n, add = self._len["keys"], key_states.shape[-2]
            k, v = self._buf["keys"], self._buf["values"]
            if k is None or k.dim() != 4 or k.shape[-2] < n + add or k.shape[:2] != key_states.shape[:2]:
                room = n + add + self.SPARE
                new_k = key_states.new_empty((*key_states.shape[:2], room, key_states.shape[-1]))
                new_v = value_states.new_empty((*value_states.shape[:2], room, value_states.shape[-1]))
                if n:
                    new_k[:, :, :n] = k[:, :, :n]
                    new_v[:, :, :n] = v[:, :, :n]
                k, v = new_k, new_v
                self._buf["keys"], self._buf["values"] = k, v
            with torch.no_grad():
                k[:, :, n:n + add] = key_states
                v[:, :, n:n + add] = value_states
            self._len["keys"] = self._len["values"] = n + add
            return self.keys, self.values

    return GrowingLayer


_GROWING: Any = None


def growing_layer() -> Any:
    """A new ``GrowingLayer`` (the class is built on first use, so importing this module stays
    free of transformers)."""
    global _GROWING
    if _GROWING is None:
        _GROWING = _growing_layer_class()
    return _GROWING()
