"""The PyTorch engine: one copy of a Hugging Face causal LM, continuous batching over a shared
KV cache, and per-request sampling.

Requests that arrive while others are decoding join the running batch at the next step: each new
prompt is prefilled alone (so no padding ever enters a prompt's own attention), its KV cache is
left-padded to the batch's length and stacked on, and from then on one forward pass per step
decodes every row. Rows carry their own RoPE positions and a 2-D attention mask hides the
padding. Finished rows leave the batch at once and all-padding columns are trimmed away.

Each request samples from its own ``torch.Generator`` seeded from the request, so the same seed
gives the same answer whoever it shares a batch with.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunery.serving.adapters import AdapterPool
from tunery.serving.engine import Delta, EngineRequest, IncrementalDecoder, StopText

log = logging.getLogger(__name__)

_CLOSE = object()
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
    pos: int = 0  # position of the next input token
    next_token: int = 0
    generated: int = 0
    done: bool = field(default=False)


class TorchEngine:
    """Serves one base model (and its LoRA adapters) from a background thread."""

    def __init__(self, model_path: Path, tokenizer: Any, stop_ids: list[int], *, max_batch: int = 16,
                 max_adapters: int | None = None, name: str = "") -> None:
        from tunery.models.loading import load_base_model

        self.name = name or str(model_path)
        self.tokenizer = tokenizer
        self.stop_ids = frozenset(stop_ids)
        self.max_batch = max(1, max_batch)
        base = load_base_model(Path(model_path))
        self.context_length = int(getattr(base.config, "max_position_embeddings", 0) or 2048)
        self.adapters = AdapterPool(base, max_adapters=max_adapters)
        self._mergeable = _mergeable(base.config)
        self._inbox: queue.Queue = queue.Queue()
        self._rows: list[_Row] = []
        self._cache: Any = None
        self._mask: Any = None  # [rows, cache length] 0/1
        self._working = False
        self._closed = False
        self.tokens_generated = 0  # a running total, for monitoring
        self._thread = threading.Thread(target=self._loop, name=f"tunery-engine-{self.name}", daemon=True)
        self._thread.start()

    # -- the contract ---------------------------------------------------------------------------

    def submit(self, request: EngineRequest) -> None:
        if self._closed:
            request.emit(Delta(request.index, error=RuntimeError("the engine was closed")))
            return
        self._inbox.put(request)

    def busy(self) -> bool:
        return self._working or bool(self._rows) or not self._inbox.empty()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._inbox.put(_CLOSE)
        self._thread.join(timeout=30)

    # -- the loop -------------------------------------------------------------------------------

    def _loop(self) -> None:
        import torch

        while True:
            pending: list[EngineRequest] = []
            if not self._rows:
                item = self._inbox.get()
                if item is _CLOSE:
                    break
                pending.append(item)
            self._working = True
            capacity = self.max_batch if self._mergeable else 1
            while len(self._rows) + len(pending) < capacity:
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if item is _CLOSE:
                    self._fail_all(RuntimeError("the engine was closed"), pending)
                    return
                pending.append(item)
            for req in pending:
                try:
                    self._admit(req)
                except Exception as e:  # one bad request (say, a broken adapter) fails alone
                    log.exception("cannot start a request on %s", self.name)
                    req.emit(Delta(req.index, error=e))
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

    def _admit(self, req: EngineRequest) -> None:
        import torch
        from transformers import DynamicCache

        if req.cancelled.is_set():
            req.emit(Delta(req.index, error=RuntimeError("cancelled")))
            return
        name = self.adapters.acquire(req.adapter)
        gen = torch.Generator().manual_seed(int(req.seed) & 0xFFFF_FFFF_FFFF_FFFF)
        row = _Row(req=req, adapter=name, decoder=IncrementalDecoder(self.tokenizer), stop=StopText(req.stop),
                   gen=gen, pos=len(req.prompt_ids))
        try:
            with torch.inference_mode():
                cache = DynamicCache(config=self.adapters.base.config)
                out = self.adapters.model(input_ids=torch.tensor([req.prompt_ids]), past_key_values=cache,
                                          use_cache=True, logits_to_keep=1,
                                          **self.adapters.forward_kwargs([name]))
                token = self._sample([row], out.logits[:, -1, :])[0]
        except BaseException:
            self.adapters.release(name)
            raise
        self._advance(row, token)
        if row.done:
            return
        self._merge(out.past_key_values, len(req.prompt_ids))
        self._rows.append(row)

    def _merge(self, cache: Any, length: int) -> None:
        """Stack one prefilled row's cache onto the batch, left-padding the shorter side."""
        import torch
        import torch.nn.functional as F

        if self._cache is None:
            self._cache, self._mask = cache, torch.ones(1, length, dtype=torch.long)
            return
        width = self._mask.shape[1]
        row_mask = torch.ones(1, length, dtype=torch.long)
        if length < width:
            for layer in cache.layers:
                layer.keys = F.pad(layer.keys, (0, 0, width - length, 0))
                layer.values = F.pad(layer.values, (0, 0, width - length, 0))
            row_mask = F.pad(row_mask, (width - length, 0))
        elif length > width:
            for layer in self._cache.layers:
                layer.keys = F.pad(layer.keys, (0, 0, length - width, 0))
                layer.values = F.pad(layer.values, (0, 0, length - width, 0))
            self._mask = F.pad(self._mask, (length - width, 0))
        for mine, theirs in zip(self._cache.layers, cache.layers, strict=True):
            mine.keys = torch.cat([mine.keys, theirs.keys])
            mine.values = torch.cat([mine.values, theirs.values])
        self._mask = torch.cat([self._mask, row_mask])

    def _step(self) -> None:
        import torch

        rows = self._rows
        input_ids = torch.tensor([[r.next_token] for r in rows])
        position_ids = torch.tensor([[r.pos] for r in rows])
        self._mask = torch.cat([self._mask, torch.ones(len(rows), 1, dtype=torch.long)], dim=1)
        # a lone row has no padding: no mask lets attention take its plain causal path
        mask = self._mask if len(rows) > 1 else None
        out = self.adapters.model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids,
                                  past_key_values=self._cache, use_cache=True,
                                  **self.adapters.forward_kwargs([r.adapter for r in rows]))
        tokens = self._sample(rows, out.logits[:, -1, :])
        for row, token in zip(rows, tokens, strict=True):
            row.pos += 1
            self._advance(row, token)
        self._compact()

    def _sample(self, rows: list[_Row], logits: Any) -> list[int]:
        greedy = logits.argmax(dim=-1).tolist()
        return [greedy[i] if row.req.temperature <= GREEDY_BELOW
                else sample_token(logits[i], row.req.temperature, row.req.top_p, row.gen)
                for i, row in enumerate(rows)]

    def _advance(self, row: _Row, token: int) -> None:
        """Account for one sampled token: send its text, or finish the row."""
        req = row.req
        row.generated += 1
        self.tokens_generated += 1
        row.next_token = token
        finish = None
        if token in self.stop_ids and not req.ignore_eos:
            text, finish = row.stop.push(row.decoder.flush()) + row.stop.flush(), "stop"
        else:
            text = row.stop.push(row.decoder.push(token))
            if row.stop.stopped:
                finish = "stop"
            elif row.generated >= req.max_tokens or row.pos + 1 >= self.context_length:
                text += row.stop.push(row.decoder.flush()) + row.stop.flush()
                finish = "length"
        if finish is not None:
            row.done = True
            self.adapters.release(row.adapter)
            req.emit(Delta(req.index, text, row.generated, finish))
        elif text:
            req.emit(Delta(req.index, text, row.generated))

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
        index = torch.tensor(keep)
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
