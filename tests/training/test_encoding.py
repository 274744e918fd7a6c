"""Label masks, token by token, against the chat template."""

from __future__ import annotations

from tunery.chat import Conversation
from tunery.chat_template import IGNORE, encode
from tunery.models.loading import load_tokenizer


def _trained_text(tok, enc) -> str:
    return tok.decode([t for t, lab in zip(enc.input_ids, enc.labels, strict=True) if lab != IGNORE])


def test_only_assistant_content_and_end_marker_are_trained(tiny_model):
    tok = load_tokenizer(tiny_model)
    conv = Conversation.from_dicts([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello there!"},
    ])
    enc = encode(conv, tok, max_length=512)
    assert enc.input_ids == tok(tok.apply_chat_template(conv.to_dicts(), tokenize=False),
                                add_special_tokens=False)["input_ids"]
    assert _trained_text(tok, enc) == "Hello there!<|im_end|>"
    # every label is either ignored or equal to its own input token
    assert all(lab in (IGNORE, tid) for tid, lab in zip(enc.input_ids, enc.labels, strict=True))
    # the assistant header is context, not trained
    first = enc.labels.index(next(lab for lab in enc.labels if lab != IGNORE))
    assert tok.decode(enc.input_ids[:first]).endswith("<|im_start|>assistant\n")


def test_multi_turn_with_mixed_weights(tiny_model):
    tok = load_tokenizer(tiny_model)
    conv = Conversation.from_dicts([
        {"role": "system", "content": "S"},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "weighted zero answer", "weight": 0},
        {"role": "user", "content": "second question"},
        {"role": "assistant", "content": "trained answer", "weight": 1},
        {"role": "user", "content": "third question"},
        {"role": "assistant", "content": "also trained"},
    ])
    enc = encode(conv, tok, max_length=1024)
    trained = _trained_text(tok, enc)
    assert trained == "trained answer<|im_end|>also trained<|im_end|>"
    # walk the tokens: the masked-in spans are exactly the two weight-1 answers
    spans, cur = [], []
    for tid, lab in zip(enc.input_ids, enc.labels, strict=True):
        if lab != IGNORE:
            cur.append(tid)
        elif cur:
            spans.append(tok.decode(cur))
            cur = []
    assert spans == ["trained answer<|im_end|>", "also trained<|im_end|>"]


def test_no_trainable_turn_gives_no_labels(tiny_model):
    tok = load_tokenizer(tiny_model)
    conv = Conversation.from_dicts([{"role": "user", "content": "q"},
                                    {"role": "assistant", "content": "a", "weight": 0}])
    enc = encode(conv, tok, max_length=512)
    assert enc.n_trained == 0


def test_truncation_keeps_prefix(tiny_model):
    tok = load_tokenizer(tiny_model)
    conv = Conversation.from_dicts([{"role": "user", "content": "word " * 200},
                                    {"role": "assistant", "content": "answer"}])
    full = encode(conv, tok, max_length=10_000)
    cut = encode(conv, tok, max_length=50)
    assert cut.truncated and not full.truncated
    assert cut.input_ids == full.input_ids[:50] and cut.labels == full.labels[:50]


def test_real_template_masks(smollm2):
    """The same masks hold with SmolLM2's own tokenizer and template."""
    tok = load_tokenizer(smollm2)
    conv = Conversation.from_dicts([
        {"role": "system", "content": "You help travellers."},
        {"role": "user", "content": "Where to in May?"},
        {"role": "assistant", "content": "Try Lisbon!", "weight": 0},
        {"role": "user", "content": "And June?"},
        {"role": "assistant", "content": "Bergen is lovely then. Hiking?"},
    ])
    enc = encode(conv, tok, max_length=2048)
    assert _trained_text(tok, enc) == "Bergen is lovely then. Hiking?<|im_end|>"
