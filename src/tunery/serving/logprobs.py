"""Log-probabilities of answer tokens (OpenAI's ``logprobs`` and ``top_logprobs``): scoring a
step's logits, each token's text and exact bytes, and laying the scored tokens along the streamed
text so that every ``Delta`` carries the tokens whose text it sends.

Values are the log-softmax of the model's raw logits, before temperature, top-p or a grammar's
mask: what the model thinks, whatever chose the token. Engines score a row only when its request
asked (``EngineRequest.logprobs``), so answers without logprobs decode as fast as before.

Bytes: a token's own bytes where the tokenizer makes them plain (byte-level BPE as SmolLM2's,
Qwen's and Llama 3's, or SentencePiece byte fallback), so a character split over tokens is split
over their ``bytes`` too and the ``bytes`` of an answer's tokens join to the UTF-8 of its text.
Where the tokenizer's decoder makes the text differ from the tokens' bytes (a SentencePiece decoder
drops the answer's leading space), a token's bytes are those of the text it adds, which keeps that
join. One exception: bytes a model writes that are not valid UTF-8 (a random model can) show as
U+FFFD in the text, and keep their own value in ``bytes``. Special tokens the text leaves out are
listed with their name as ``token`` and no bytes.
"""

from __future__ import annotations

import json
import re
import threading
import weakref
from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from tunery.chat import TokenLogprob


class StopText(Protocol):
    """What :meth:`AnswerLogprobs.take` reads of the stop-string scan (``engine.StopText``)."""

    text: str
    stopped: bool

    @property
    def sent(self) -> int: ...

Scored = tuple[float, tuple[tuple[int, float], ...]]
"""One step's scores for a row: the chosen token's log-prob, and the top (token id, log-prob) pairs."""


def score(logits: np.ndarray, token: int, top: int) -> Scored:
    """The log-probability of ``token`` under one row of raw ``logits``, and the ``top`` most
    likely tokens under the same distribution, most likely first."""
    x = np.asarray(logits, dtype=np.float64).reshape(-1)
    peak = x.max()
    norm = peak + np.log(np.exp(x - peak).sum())
    best: tuple[tuple[int, float], ...] = ()
    if top:
        top = min(top, x.shape[0])
        ids = np.argpartition(-x, top - 1)[:top]
        ids = ids[np.argsort(-x[ids], kind="stable")]
        best = tuple((int(i), float(x[i] - norm)) for i in ids)
    return float(x[token] - norm), best


def _byte_level_table() -> dict[str, int]:
    """GPT-2's byte-to-character map, reversed: how byte-level BPE spells each byte."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = list(bs)
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


_UNBYTE = _byte_level_table()
_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _kinds(decoder: dict[str, Any]) -> set[str]:
    """The decoder's step types (a ``Sequence``'s, flattened), and ``Metaspace`` where a ``Replace``
    turns SentencePiece's ``▁`` into a space."""
    kind = decoder.get("type")
    if kind == "Sequence":
        return set().union(*(_kinds(d) for d in decoder.get("decoders") or ()))
    if kind == "Replace" and (decoder.get("pattern") or {}).get("String") == "\u2581":
        return {"Metaspace"}
    return {kind} if kind else set()


def bytes_text(raw: bytes) -> str:
    """A token's text from its bytes; ``bytes:\\xe2\\x80`` (OpenAI's form) when they are part of a
    character."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in raw)


class Vocab:
    """Each token's text and bytes on their own (None bytes: the tokenizer does not make them
    plain), worked out on first use."""

    def __init__(self, tokenizer: Any) -> None:
        self._tok = weakref.ref(tokenizer)  # the cache below is keyed by the tokenizer: no strong ref back
        self._backend = getattr(tokenizer, "backend_tokenizer", None)
        decoder = getattr(self._backend, "decoder", None)
        self._kinds = _kinds(json.loads(decoder.__getstate__())) if decoder is not None else set()
        added = self._backend.get_added_tokens_decoder() if self._backend is not None else {}
        self._added = {int(i): (t.content, bool(t.special)) for i, t in added.items()}
        self._pieces: dict[int, tuple[str, bytes | None]] = {}

    def piece(self, token: int) -> tuple[str, bytes | None]:
        got = self._pieces.get(token)
        if got is None:
            got = self._pieces[token] = self._piece(token)
        return got

    def _piece(self, token: int) -> tuple[str, bytes | None]:
        if token in self._added:
            content, special = self._added[token]
            return content, b"" if special else content.encode()
        name = self._backend.id_to_token(token) if self._backend is not None else None
        raw: bytes | None = None
        if name is None and self._backend is not None:
            return "", b""  # past the tokenizer's vocabulary (an embedding padded for speed)
        if "ByteLevel" in self._kinds and all(c in _UNBYTE for c in name):
            raw = bytes(_UNBYTE[c] for c in name)
        elif "ByteFallback" in self._kinds and (m := _BYTE_TOKEN.fullmatch(name)):
            raw = bytes([int(m.group(1), 16)])
        elif "Metaspace" in self._kinds:
            raw = name.replace("\u2581", " ").encode()
        if raw is not None:
            return bytes_text(raw), raw
        text = self._tok().decode([token], skip_special_tokens=True, clean_up_tokenization_spaces=False)
        return text, None if "\ufffd" in text else text.encode()

    def entry(self, token: int, logprob: float, top: tuple[TokenLogprob, ...] = ()) -> TokenLogprob:
        """The token on its own, as listed among the most likely ones."""
        text, raw = self.piece(token)
        return TokenLogprob(text, logprob, raw if raw is not None else text.encode(), top)


_vocabs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_vocabs_lock = threading.Lock()


def vocab(tokenizer: Any) -> Vocab:
    """The :class:`Vocab` of a tokenizer, one per tokenizer object."""
    with _vocabs_lock:
        got = _vocabs.get(tokenizer)
        if got is None:
            got = _vocabs[tokenizer] = Vocab(tokenizer)
        return got


class Spans:
    """Groups of entries laid along a text, each group over the next ``length`` units of it
    (characters, or bytes), handed out in order as the text is sent."""

    def __init__(self) -> None:
        self._groups: deque[tuple[int, int, tuple[Any, ...]]] = deque()
        self.end = 0

    def add(self, entries: Sequence[Any], length: int) -> None:
        start, self.end = self.end, self.end + length
        if entries:
            self._groups.append((start, self.end, tuple(entries)))

    def add_tokens(self, entries: Sequence[TokenLogprob]) -> Spans:
        """Each entry over its own bytes (``TokenLogprob.utf8``, which join to the answer as written)."""
        for e in entries:
            self.add((e,), len(e.utf8))
        return self

    def release(self, upto: int) -> tuple[Any, ...]:
        """The entries whose text is all within the first ``upto`` units."""
        out: list[Any] = []
        while self._groups and self._groups[0][1] <= upto:
            out += self._groups.popleft()[2]
        return tuple(out)

    def cut(self, at: int) -> tuple[Any, ...]:
        """The text ends at ``at``: the entries with any text before it (the one it cuts included);
        the rest are dropped."""
        out = [e for start, end, group in self._groups if start < at or end <= at for e in group]
        self._groups.clear()
        return tuple(out)


class AnswerLogprobs:
    """One answer's scored tokens, laid along its text: a token the decoder holds back (part of a
    character, a special token) joins the token whose text releases it, and the group is sent with
    the delta that sends the end of that text (:meth:`take`)."""

    def __init__(self, vocab: Vocab, top: int) -> None:
        self.vocab = vocab
        self.top = top
        self._spans = Spans()
        self._held: list[tuple[int, Scored]] = []

    def push(self, token: int, scored: Scored, text: str, *, holding: bool) -> None:
        """A generated token, its scores, and the text the decoder released with it (``holding``:
        the decoder still holds text back, this token's among it)."""
        self._held.append((token, scored))
        if not holding:
            self.flush(text)

    def flush(self, text: str) -> None:
        """The decoder's held-back ``text`` at the end of the answer."""
        if self._held:
            group, self._held = self._held, []
            self._spans.add(self._entries(group, text), len(text))

    def take(self, stop: StopText) -> tuple[TokenLogprob, ...]:
        """The entries whose text the stop-string scan has now sent; once it found a stop string,
        those with any text before it (the token the stop string starts in is listed)."""
        return self._spans.cut(len(stop.text)) if stop.stopped else self._spans.release(stop.sent)

    def _entries(self, group: list[tuple[int, Scored]], text: str) -> list[TokenLogprob]:
        pieces = [self.vocab.piece(token) for token, _ in group]
        data = text.encode()
        known = all(raw is not None for _, raw in pieces)
        joined = b"".join(raw for _, raw in pieces) if known else b""  # type: ignore[misc]
        own = known and (joined == data or "\ufffd" in text)
        out = []
        for k, ((_, (lp, best)), (piece, raw)) in enumerate(zip(group, pieces, strict=True)):
            top = tuple(self.vocab.entry(t, v) for t, v in best)
            if own:
                out.append(TokenLogprob(piece, lp, raw, top))  # type: ignore[arg-type]
            elif len(group) == 1:
                out.append(TokenLogprob(text, lp, data, top))
            else:  # the text on the token that released it
                out.append(TokenLogprob(piece, lp, data if k == len(group) - 1 else b"", top))
        return out
