"""Incremental detokenization and stop-string hold-back."""

from __future__ import annotations

import pytest

from tunery.serving.engine import IncrementalDecoder, StopText, token_text


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.mark.parametrize("text", ["Hello, Rome!", "café crème — 東京 🚆 ok", "a\nb\n\n  c"])
def test_deltas_add_up_to_the_decoded_text(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    dec = IncrementalDecoder(tokenizer)
    deltas = [dec.push(i) for i in ids] + [dec.flush()]
    assert "".join(deltas) == tokenizer.decode(ids) == text
    assert all("\ufffd" not in d for d in deltas)  # never half a character


def _feed(stop: StopText, pieces: list[str]) -> str:
    return "".join(stop.push(p) for p in pieces)


def test_stop_string_split_across_deltas_never_leaks():
    st = StopText(["END"])
    sent = [st.push(p) for p in ["Hello E", "N", "D and more"]]
    assert "".join(sent) == "Hello "
    assert sent[0] == "Hello "  # "E" is held back: it may start the stop string
    assert st.stopped


def test_held_back_text_is_released_when_no_stop_follows():
    st = StopText(["END"])
    assert st.push("Hello EN") == "Hello "
    assert st.push("ough") == "ENough"
    assert st.push(" E") == " "
    assert st.flush() == "E"
    assert not st.stopped


def test_earliest_of_several_stop_strings_wins():
    st = StopText(["\n\n", "User:"])
    assert _feed(st, ["one User: two\n\nthree"]) == "one "
    assert st.text == "one "


def test_no_stop_strings_pass_everything():
    st = StopText([])
    assert _feed(st, ["a", "b"]) == "ab"
    assert st.flush() == ""


def test_token_text_finishes_on_end_of_turn_stop_string_or_limit(tokenizer):
    ids = tokenizer("Hello there. Bye", add_special_tokens=False)["input_ids"]

    def run(stop=(), limit=None, eot_at=None):
        dec, st, out = IncrementalDecoder(tokenizer), StopText(stop), ""
        for n, tok in enumerate(ids, 1):
            text, finish = token_text(dec, st, tok, end_of_turn=n == eot_at, at_limit=n == limit)
            out += text
            if finish:
                return out, finish, n
        return out, None, len(ids)

    assert run() == ("Hello there. Bye", None, len(ids))
    assert run(limit=2) == (tokenizer.decode(ids[:2]), "length", 2)
    text, finish, n = run(stop=["there"])
    assert (text, finish) == ("Hello ", "stop") and n < len(ids)
    text, finish, n = run(eot_at=3)  # the end-of-turn token itself adds no text
    assert finish == "stop" and n == 3 and text == tokenizer.decode(ids[:2])
