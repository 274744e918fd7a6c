"""Scored tokens laid along the streamed text (``tunery.serving.logprobs``), fed as an engine feeds
them: each delta lists the tokens whose text it completes, a character split over tokens is split
over their bytes, special tokens have none, and a stop string keeps the token it starts in."""

from __future__ import annotations

import numpy as np
import pytest

from tunery.serving.engine import IncrementalDecoder, StopText, token_text
from tunery.serving.logprobs import AnswerLogprobs, Vocab, score


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def run(tokenizer, ids: list[int], stop=(), *, eot_at: int | None = None):
    """Feed ``ids`` as an engine does, each scored with its position; the deltas' (text, tokens)."""
    dec, st = IncrementalDecoder(tokenizer), StopText(stop)
    scores = AnswerLogprobs(Vocab(tokenizer), 0)
    deltas = []
    for n, tok in enumerate(ids, 1):
        text, finish = token_text(dec, st, tok, end_of_turn=n == eot_at, at_limit=n == len(ids),
                                  scores=scores, scored=(-float(n), ()))
        deltas.append((text, scores.take(st)))
        if finish:
            break
    return deltas


def test_score_is_the_log_softmax_and_the_top_tokens_sorted():
    import torch

    logits = np.random.default_rng(0).normal(size=300).astype(np.float32) * 4
    lp, top = score(logits, 7, 5)
    want = torch.log_softmax(torch.tensor(logits), dim=-1)
    assert abs(lp - float(want[7])) < 1e-5
    values, ids = want.topk(5)
    assert [i for i, _ in top] == ids.tolist()
    assert np.allclose([v for _, v in top], values.numpy(), atol=1e-5)
    assert score(logits, 7, 0)[1] == ()


def test_a_character_split_over_tokens_is_split_over_their_bytes(tokenizer):
    text = "café 東京 🚆 ok"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    deltas = run(tokenizer, ids)
    entries = [e for _, got in deltas for e in got]
    assert [e.logprob for e in entries] == [-float(n) for n in range(1, len(ids) + 1)]  # every token, in order
    assert b"".join(e.utf8 for e in entries) == text.encode()
    partial = [e for e in entries if e.token.startswith("bytes:")]
    assert partial  # the tiny tokenizer spells these characters in byte tokens
    for e in partial:
        with pytest.raises(UnicodeDecodeError):
            e.utf8.decode("utf-8")
        assert e.token == "bytes:" + "".join(f"\\x{b:02x}" for b in e.utf8)
    sent = listed = 0
    for part, got in deltas:  # a token goes with the delta that sends the end of its text
        sent += len(part.encode())
        listed += sum(len(e.utf8) for e in got)
        assert listed <= sent


def test_special_tokens_are_listed_without_bytes_and_the_end_of_turn_not_at_all(tokenizer):
    start, end = tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    ids = tokenizer("Hi", add_special_tokens=False)["input_ids"] + [start] + tokenizer(
        " Rome", add_special_tokens=False)["input_ids"] + [end]
    entries = [e for _, got in run(tokenizer, ids, eot_at=len(ids)) for e in got]
    assert len(entries) == len(ids) - 1
    special = entries[len(ids) - 1 - len(tokenizer(" Rome", add_special_tokens=False)["input_ids"]) - 1]
    assert (special.token, special.utf8) == ("<|im_start|>", b"")
    assert b"".join(e.utf8 for e in entries) == b"Hi Rome"


def test_a_stop_string_keeps_the_token_it_starts_in_and_drops_the_rest(tokenizer):
    text = "Rome is lovely. Paris too."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    deltas = run(tokenizer, ids, stop=["ly."])
    content = "".join(t for t, _ in deltas)
    entries = [e for _, got in deltas for e in got]
    assert content == "Rome is love"
    pieces = [tokenizer.decode([i]) for i in ids]
    starts = np.cumsum([0] + [len(p) for p in pieces])
    assert len(entries) == sum(1 for s in starts[:-1] if s < len(content))
    assert b"".join(e.utf8 for e in entries).startswith(content.encode())


def test_a_decoder_that_drops_the_leading_space_keeps_the_bytes_joined_to_the_text():
    """A SentencePiece-style tokenizer (``▁`` for spaces, byte fallback, the answer's first space
    stripped): the first token's bytes are the text it adds, a character in byte tokens is split
    over them."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "▁Hello": 1, "▁caf": 2, "<0xC3>": 3, "<0xA9>": 4, "!": 5}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")
    ids = [1, 2, 3, 4, 5]
    deltas = run(fast, ids)
    text = "".join(t for t, _ in deltas)
    entries = [e for _, got in deltas for e in got]
    assert text == "Hello café!" == fast.decode(ids)
    assert [(e.token, e.utf8) for e in entries] == [("Hello", b"Hello"), (" caf", b" caf"), ("bytes:\\xc3", b"\xc3"),
                                                    ("bytes:\\xa9", b"\xa9"), ("!", b"!")]


def test_a_tokenizer_is_not_kept_alive_by_its_vocab():
    """The per-tokenizer cache is weak: a model unloaded takes its tokenizer (and pieces) with it."""
    import gc
    import weakref

    from tunery.serving.logprobs import vocab

    class Tok:  # only what Vocab reads of a tokenizer without a fast backend
        def decode(self, ids, **kw):
            return "x"

    tok = Tok()
    assert vocab(tok).piece(3) == ("x", b"x")
    alive = weakref.ref(tok)
    del tok
    gc.collect()
    assert alive() is None


def test_a_blocked_answer_lists_no_token_of_the_blocked_word():
    """The content filter cuts the text before a blocked word; the token holding it is not listed."""
    from tunery.chat import TokenLogprob
    from tunery.serving.content_filter import ContentFilter
    from tunery.serving.engine import Delta, EngineRequest
    from tunery.serving.local import ChatRun

    run_ = ChatRun(3, "m", ContentFilter("strict"), None)
    run_.started([EngineRequest(prompt_ids=[1], max_tokens=10, emit=lambda d: None, logprobs=0)])
    listed, text = [], ""
    for k, t in enumerate(["Oh", " shit", " no", " more", " text", " here", " to", " fill", " it"]):
        for c in run_._chunks(Delta(0, t, k + 1, logprobs=(TokenLogprob(t, -1.0, t.encode()),))):
            text += c.text or ""
            listed += [e.token for e in c.logprobs or ()]
        if run_.finish_reasons[0] == "content_filter":
            break
    assert run_.finish_reasons[0] == "content_filter"
    assert "shit" not in text and " shit" not in listed, (text, listed)


def test_a_blocked_word_is_not_listed_among_another_token_s_alternatives():
    """The answer never wrote the blocked word, but its ``top_logprobs`` would have listed it as
    an alternative; it is left out there, the other alternatives kept."""
    from tunery.chat import TokenLogprob
    from tunery.serving.content_filter import ContentFilter
    from tunery.serving.engine import Delta, EngineRequest
    from tunery.serving.local import ChatRun

    run_ = ChatRun(3, "m", ContentFilter("strict"), None)
    run_.started([EngineRequest(prompt_ids=[1], max_tokens=10, emit=lambda d: None, logprobs=3)])
    alts = tuple(TokenLogprob(t, -1.5, t.encode()) for t in (" oh", " shit", " well"))
    listed = []
    for k, t in enumerate([" oh", " dear", " me", " what", " a", " day", "."]):
        final = "stop" if t == "." else None
        for c in run_._chunks(Delta(0, t, k + 1, final, logprobs=(TokenLogprob(t, -1.0, t.encode(), alts),))):
            listed += [a.token for e in c.logprobs or () for a in e.top]
    assert run_.finish_reasons[0] == "stop"
    assert " shit" not in listed and listed.count(" oh") == listed.count(" well") == 7, listed
