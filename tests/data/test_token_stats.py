"""Token statistics against counts made by hand with the tiny model's tokenizer."""

from __future__ import annotations

import pytest

from tunery.chat import ChatMessage, Conversation, Role
from tunery.data import token_stats
from tunery.data.stats import Summary
from tunery.errors import InvalidInput


@pytest.fixture
def tok(tiny_model):
    from tunery.models.loading import load_tokenizer

    return load_tokenizer("tiny-random")


def conv(*turns: tuple[str, str] | tuple[str, str, int]) -> Conversation:
    return Conversation(tuple(ChatMessage(Role(t[0]), t[1], t[2] if len(t) > 2 else None) for t in turns))


EXAMPLES = [
    conv(("system", "You are a helpful assistant."), ("user", "Where is Rome?"), ("assistant", "Rome is in Italy.")),
    conv(("user", "Hello!"), ("assistant", "Hello! How can I help you today?", 0), ("user", "Trains or buses?"),
         ("assistant", "Trains are quick; buses are cheap.")),
    conv(("system", "You are a helpful assistant."), ("user", "Best time to travel?"),
         ("assistant", "Spring and autumn are mild.", 1), ("user", "Thank you!")),
]


def test_counts_match_a_manual_computation(tok):
    stats = token_stats(EXAMPLES, tok, context_length=1024, n_epochs=2)
    lengths = [len(tok.apply_chat_template(c.to_dicts(), tokenize=True, return_dict=False)) for c in EXAMPLES]
    # trained: each weight-1 assistant answer and the <|im_end|> that closes it
    answers = ["Rome is in Italy.", "Trains are quick; buses are cheap.", "Spring and autumn are mild."]
    trained = sum(len(tok(a, add_special_tokens=False)["input_ids"]) + 1 for a in answers)
    assert stats.n_examples == 3
    assert stats.total_tokens == sum(lengths)
    assert stats.trained_tokens == trained
    assert stats.billed_tokens == 2 * sum(lengths) and stats.n_epochs == 2
    assert (stats.tokens.min, stats.tokens.max) == (min(lengths), max(lengths))
    assert stats.tokens.median == sorted(lengths)[1]
    assert (stats.turns.min, stats.turns.median, stats.turns.max) == (3, 4, 4)
    assert stats.n_over_context == 0 and stats.context_length == 1024


def test_slow_tokenizer_path_counts_the_same(tok):
    class Slow:
        is_fast = False

        def apply_chat_template(self, *a, **kw):
            return tok.apply_chat_template(*a, **kw)

        def __call__(self, texts, add_special_tokens=False):
            return {"input_ids": tok(texts, add_special_tokens=add_special_tokens)["input_ids"]}

    fast = token_stats(EXAMPLES, tok, context_length=1024)
    assert token_stats(EXAMPLES, Slow(), context_length=1024) == fast


def test_examples_over_the_context_are_counted(tok):
    lengths = sorted(len(tok.apply_chat_template(c.to_dicts(), tokenize=True, return_dict=False)) for c in EXAMPLES)
    stats = token_stats(EXAMPLES, tok, context_length=lengths[0])
    assert stats.n_over_context == 2


def test_to_dict_and_bad_epochs(tok):
    d = token_stats(EXAMPLES[:1], tok, context_length=64).to_dict()
    assert d["tokens"]["p95"] == d["tokens"]["max"] == d["total_tokens"] and d["billed_tokens"] == 3 * d["total_tokens"]
    with pytest.raises(InvalidInput, match="n_epochs"):
        token_stats(EXAMPLES, tok, context_length=64, n_epochs=0)


def test_no_examples(tok):
    stats = token_stats([], tok, context_length=64)
    assert stats.n_examples == 0 and stats.total_tokens == 0 and stats.tokens == Summary(0, 0.0, 0, 0, 0.0)


def test_summary_percentile_is_nearest_rank():
    assert Summary.of(list(range(1, 21))).p95 == 19
    assert Summary.of(list(range(100, 0, -1))) == Summary(1, 50.5, 95, 100, 50.5)
    assert Summary.of([7]) == Summary(7, 7.0, 7, 7, 7.0)
