"""Skip the frozen lower layers: when LoRA adapts only the upper layers of a decoder, the layers
below never change during training, so their output for an example is the same at every step of
every epoch. It is computed once per example (under ``no_grad``, one example at a time so the
value never depends on which batch asked first, which keeps runs and resumed runs bit-identical)
and kept in memory up to a budget; a token prefix common to the data (a shared system message) runs
through the frozen layers once for all. Every training step then runs only the trained layers,
on the examples packed into one row without padding, and the backward pass stops where the
adapters stop.

Supported for decoders whose layers take ``(hidden, attention_mask, position_ids,
cache, use_cache, position_embeddings)`` (the Llama family); anything else trains with
the plain forward, which still stops the backward pass at the lowest adapted layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunery.models.loading import attention_mask
from tunery.training.batching import MIN_SHARED_PREFIX, common_prefix
from tunery.training.model import autocast_context, decoder_and_head

if TYPE_CHECKING:
    import torch

    from tunery.chat_template import EncodedExample

SUPPORTED_MODEL_TYPES = frozenset({"llama", "qwen2", "qwen3", "mistral", "phi3"})
"""Full causal attention only: the masks built here know nothing of sliding windows, so a model
whose config sets one (Mistral v0.1, Phi-3-mini's 2047, Gemma) takes the plain path. The loss of
each family on both paths is compared in tests/models/test_arch_matrix.py."""
DEFAULT_BUDGET_BYTES = 2 << 30


def first_trained_layer(model) -> int:
    """Index of the lowest decoder layer holding a trainable parameter; 0 when anything below the
    layers (the embeddings) trains or no layer index can be read."""
    import re

    lowest = None
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        m = re.search(r"\.layers\.(\d+)\.", name)
        if m is None:
            return 0
        lowest = int(m.group(1)) if lowest is None else min(lowest, int(m.group(1)))
    return lowest or 0


class FrozenLayers:
    """The output of decoder layers ``[0, start)`` per example, computed once and kept."""

    def __init__(self, decoder, start: int, *, budget_bytes: int = DEFAULT_BUDGET_BYTES,
                 autocast_dtype=None) -> None:
        self.decoder = decoder
        self.start = start
        self.budget = budget_bytes
        self.autocast_dtype = autocast_dtype
        self.used = 0
        self._cache: dict[tuple[int, ...], torch.Tensor] = {}
        self._prefixes: dict[tuple[int, ...], Any] = {}

    @classmethod
    def for_model(cls, model, **kw) -> FrozenLayers | None:
        """None when the model cannot take the short path (unsupported family, or every layer
        trains)."""
        decoder, _ = decoder_and_head(model)
        impl = getattr(decoder.config, "_attn_implementation", "sdpa")
        if (decoder.config.model_type not in SUPPORTED_MODEL_TYPES or impl not in ("sdpa", "eager")
                or getattr(decoder.config, "use_sliding_window", False)
                or (decoder.config.model_type in ("mistral", "phi3") and decoder.config.sliding_window)):
            return None
        start = first_trained_layer(model)
        return cls(decoder, start, **kw) if start > 0 else None

    def share_prefix(self, examples: list[EncodedExample], *, min_len: int = MIN_SHARED_PREFIX) -> int:
        """Register the token prefix common to ``examples`` (e.g. one system message): the frozen
        layers then run it once and each example only runs what follows. Returns its length."""
        n = common_prefix(examples) if len(examples) >= 2 else 0
        if n < min_len:
            return 0
        self._prefixes.setdefault(tuple(examples[0].input_ids[:n]), None)
        return n

    def _run(self, ids: list[int], past: tuple[Any, Any] | None):
        """Frozen layers over ``ids`` after an optional computed prefix ``(hidden, cache)``:
        the hidden states of ``ids`` and the cache holding prefix and ``ids``."""
        import torch
        from transformers import DynamicCache

        device = self.decoder.embed_tokens.weight.device
        p = 0 if past is None else past[0].shape[0]
        cache = DynamicCache(config=self.decoder.config)
        if past is not None:
            for i, (k, v) in enumerate(past[1]):
                cache.update(k, v, i)
        x = torch.tensor([ids], device=device)
        with torch.no_grad(), autocast_context(device.type, self.autocast_dtype):
            h = self.decoder.embed_tokens(x)
            pos = torch.arange(p, p + len(ids), device=device)[None]
            pe = self.decoder.rotary_emb(h, position_ids=pos)
            allowed = torch.arange(p + len(ids), device=device)[None, :] <= pos[0][:, None]
            mask = attention_mask(allowed[None, None], self.decoder.config, h.dtype, plain_causal=not p)
            for layer in self.decoder.layers[:self.start]:
                h = layer(h, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True,
                          position_embeddings=pe)
        kv = [(cache.layers[i].keys, cache.layers[i].values) for i in range(self.start)]
        return h[0], kv

    def _compute(self, example: EncodedExample) -> torch.Tensor:
        import torch

        ids = example.input_ids
        match = max((pre for pre in self._prefixes if len(pre) < len(ids) and tuple(ids[:len(pre)]) == pre),
                    key=len, default=None)
        if match is None:
            return self._run(ids, None)[0]
        if self._prefixes[match] is None:
            self._prefixes[match] = self._run(list(match), None)
        past = self._prefixes[match]
        rest, _ = self._run(ids[len(match):], past)
        return torch.cat([past[0], rest])

    def hidden(self, example: EncodedExample) -> torch.Tensor:
        key = tuple(example.input_ids)  # by content: an id() is reused once its example is freed
        h = self._cache.get(key)
        if h is None:
            h = self._compute(example)
            size = h.numel() * h.element_size()
            if self.used + size <= self.budget:
                self._cache[key] = h
                self.used += size
        return h


def packed_forward(frozen: FrozenLayers, examples: list[EncodedExample], prefix_len: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the trained layers ``[start, end)`` and the final norm on the kept outputs of the
    frozen layers, with the examples packed into one row: no padding at all. The common prefix
    (``prefix_len`` tokens, labelled nowhere) runs once; each example then attends to it and,
    causally, to itself only. Returns the normed hidden states at labelled positions and their
    target token ids."""
    import torch
    from transformers import DynamicCache

    from tunery.chat_template import IGNORE

    decoder = frozen.decoder
    layers = decoder.layers[frozen.start:]
    p = prefix_len
    kept = [frozen.hidden(e) for e in examples]
    device = kept[0].device
    cache = DynamicCache(config=decoder.config) if p else None
    if p:
        h = kept[0][None, :p]
        pos = torch.arange(p, device=device)[None]
        pe = decoder.rotary_emb(h, position_ids=pos)
        causal = attention_mask((pos[0][None, :] <= pos[0][:, None])[None, None], decoder.config, h.dtype,
                                plain_causal=True)
        for layer in layers:
            h = layer(h, attention_mask=causal, position_ids=pos, cache=cache, use_cache=True,
                      position_embeddings=pe)
    h = torch.cat([k[p:] for k in kept])[None]
    pos = torch.cat([torch.arange(p, len(e), device=device) for e in examples])
    seg = torch.cat([torch.full((len(e) - p,), i, device=device) for i, e in enumerate(examples)])
    targets = torch.tensor([t for e in examples for t in (*e.labels[p + 1:], IGNORE)], device=device)
    own = (seg[:, None] == seg[None, :]) & (pos[None, :] <= pos[:, None])
    allowed = torch.cat([own.new_ones((len(pos), p)), own], dim=1)[None, None]
    mask = attention_mask(allowed, decoder.config, h.dtype, plain_causal=len(examples) == 1 and not p)
    pe = decoder.rotary_emb(h, position_ids=pos[None])
    for layer in layers:
        h = layer(h, attention_mask=mask, position_ids=pos[None], cache=cache, use_cache=cache is not None,
                  position_embeddings=pe)
    sel = targets != IGNORE
    return decoder.norm(h[0][sel]), targets[sel]
