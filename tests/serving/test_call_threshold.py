"""The tool-call threshold (issue 17): under ``auto`` an answer may open a call only when the model
gives one at least that probability; below it the answer is words. Checked on the guide with
chosen logits, then through both engines and the model's saved threshold (the server's field:
tests/server/test_tools_api.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tunery.chat import ChatMessage, GenerationParams, Role
from tunery.errors import InvalidInput

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string", "maxLength": 6}}, "required": ["city"],
    "additionalProperties": False}}}
ASK = [ChatMessage(Role.USER, "Weather in Rome?")]
OPEN = "<tool_call>"


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_opens_call_is_a_prefix_of_the_tag_or_starts_with_it():
    from tunery.serving.constrained import opens_call

    assert opens_call(b"<") and opens_call(b"<tool") and opens_call(OPEN.encode()) and opens_call(b"<tool_call>\n")
    assert not opens_call(b"") and not opens_call(b"<a") and not opens_call(b" <tool") and not opens_call(b"Hi")


def test_opening_ids_are_the_tokens_that_open_the_tag(tok):
    from tunery.serving.constrained import opening_ids

    ids = opening_ids(tok)
    first = tok.encode(OPEN, add_special_tokens=False)[0]
    assert first in ids
    assert all(OPEN.startswith(tok.decode([i])) or tok.decode([i]).startswith(OPEN) for i in ids)
    assert tok.encode("Hello", add_special_tokens=False)[0] not in ids
    assert opening_ids(tok) is ids  # found once per tokenizer


def test_call_probability_is_the_softmax_share_of_the_opening_tokens():
    from tunery.serving.constrained import call_probability

    logits = np.array([2.0, 0.0, 1.0, -np.inf, 3.0], dtype=np.float32)
    p = np.exp(logits - 3.0) / np.exp(logits - 3.0).sum()
    assert call_probability(logits, np.array([0, 2])) == pytest.approx(p[0] + p[2])
    assert call_probability(logits, np.array([], dtype=np.int64)) == 0.0
    assert call_probability(logits, np.array([4, 9])) == pytest.approx(p[4])  # ids past the row ignored


def walk(guide, tok, text: str) -> bool:
    for t in tok.encode(text, add_special_tokens=False):
        if not guide.allowed(len(tok))[t]:
            return False
        guide.consume(t)
    return True


@pytest.mark.parametrize("p_open, calls", [(0.95, True), (0.5, False)])
def test_the_first_step_decides_whether_the_answer_may_call(tok, p_open, calls):
    from tunery.serving.constrained import Guide, call_gate, grammar, opening_ids

    params = GenerationParams(tools=(WEATHER,))
    guide = Guide(grammar(params), tok, [tok.eos_token_id], gate=call_gate(params, 0.9))
    opening = opening_ids(tok)
    raw = np.full(len(tok), -50.0)
    raw[opening[0]] = np.log(p_open)
    raw[tok.encode("Sun", add_special_tokens=False)[0]] = np.log(1 - p_open)
    biased = raw.copy()
    biased[opening[0]] += 100  # a logit_bias: the gate weighs the model's own probability
    guide.apply(biased, raw)
    assert guide.call_probability == pytest.approx(p_open, abs=1e-6)
    assert walk(guide, tok, OPEN + '\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>') == calls


def test_without_calls_the_answer_is_words_or_the_response_format(tok):
    from tunery.serving.constrained import Guide, no_call_grammar

    def fresh(**kw):
        return Guide(no_call_grammar(GenerationParams(tools=(WEATHER,), **kw)), tok, [tok.eos_token_id])

    assert walk(fresh(), tok, "It is <b>sunny</b> in Rome.")
    assert not walk(fresh(), tok, "Let me look. " + OPEN)
    doc = {"type": "json_schema", "json_schema": {"name": "w", "schema": {
        "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}}}
    assert walk(fresh(response_format=doc), tok, '{"ok": true}')
    assert not walk(fresh(response_format=doc), tok, "Sunny.")


def test_the_gate_applies_under_auto_with_tools_and_a_threshold_only():
    from tunery.serving.constrained import call_gate

    auto = GenerationParams(tools=(WEATHER,))
    assert call_gate(auto, 0.9)[0] == 0.9
    assert call_gate(auto, None) is None and call_gate(auto, 0) is None
    assert call_gate(GenerationParams(tools=(WEATHER,), tool_choice="required"), 0.9) is None
    assert call_gate(GenerationParams(), 0.9) is None


@pytest.mark.parametrize("bad", [-0.1, 1.5, True, "0.9"])
def test_a_threshold_outside_0_to_1_is_refused_by_name(bad):
    with pytest.raises(InvalidInput) as e:
        GenerationParams(tool_call_threshold=bad)
    assert e.value.param == "tool_call_threshold" and "between 0 and 1" in str(e.value)


def opening(tok) -> int:
    from tunery.serving.constrained import opening_ids

    ids = opening_ids(tok).tolist()
    assert [tok.decode([i]) for i in ids] == ["<"]  # the tiny tokenizer's one token that opens a call
    return ids[0]


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_engines_weigh_what_calibration_measures(tiny_model, tok, call_gates, precision):
    """The gate's probability is the model's own (before logit_bias), the one logprobs report, on
    both engines; below the threshold no call can follow, and the answer does not even open with
    the tag's first character, which the bias pushes."""
    from tunery.serving.local import LocalChatModel

    lt = opening(tok)
    model = LocalChatModel("tiny-random", precision=precision)
    ask = dict(tools=(WEATHER,), temperature=0, max_tokens=12, logit_bias={str(lt): 100}, logprobs=True)
    opened = model.generate(ASK, GenerationParams(**ask, tool_call_threshold=1e-9))  # a gate that stays open
    first = opened.logprobs[0][0]
    assert first.token == "<" and opened.text.startswith("<")
    closed = model.generate(ASK, GenerationParams(**ask, tool_call_threshold=0.5))
    assert not closed.text.startswith("<") and OPEN not in closed.text
    assert [g["threshold"] for g in call_gates] == [1e-9, 0.5]
    assert call_gates[0]["p"] == call_gates[1]["p"] == pytest.approx(math.exp(first.logprob), rel=1e-3)
    assert call_gates[0]["p"] < 0.5


def test_a_closed_gate_bars_the_tags_first_tokens_at_the_first_step(tok):
    """A model 80% sure of a call, under a threshold of 0.9: without the bar, greedy would write
    the tag's first character and go on with the call as text."""
    from tunery.serving.constrained import Guide, call_gate, grammar, opening_ids

    params = GenerationParams(tools=(WEATHER,))
    guide = Guide(grammar(params), tok, [tok.eos_token_id], gate=call_gate(params, 0.9))
    opening = opening_ids(tok)
    logits = np.full(len(tok), -50.0)
    logits[opening[0]] = np.log(0.8)
    words = tok.encode("Sun", add_special_tokens=False)[0]
    logits[words] = np.log(0.2)
    guide.apply(logits)
    assert np.isneginf(logits[opening]).all() and int(logits.argmax()) == words
    guide.consume(words)
    second = np.zeros(len(tok))
    guide.apply(second)  # only the first step is barred: later text may hold a '<'
    assert not np.isneginf(second[opening]).any()


def test_a_models_saved_threshold_applies_unless_the_request_sends_its_own(tiny_model, call_gates):
    from tunery.models import registry
    from tunery.serving.local import LocalChatModel

    rec = registry.update_meta("tiny-random", tool_call_threshold=0.7)
    assert rec.meta["tool_call_threshold"] == 0.7 and rec.meta["catalog"] == "tiny-random"
    model = LocalChatModel("tiny-random", precision="fp32")
    for sent in (None, 0, 0.2):
        model.generate(ASK, GenerationParams(tools=(WEATHER,), max_tokens=2, tool_call_threshold=sent))
    model.generate(ASK, GenerationParams(tools=(WEATHER,), tool_choice="required", max_tokens=2))
    assert [g["threshold"] for g in call_gates] == [0.7, None, 0.2, None]
    assert "tool_call_threshold" not in registry.update_meta("tiny-random", tool_call_threshold=None).meta


def test_a_checkpoint_neither_takes_its_bases_threshold_nor_saves_one(tiny_model, chat_file, tmp_path):
    from support_adapters import FT_ID, checkpoint_of_ft
    from tunery.models import registry

    name, _, job = checkpoint_of_ft(tiny_model, chat_file, tmp_path)  # a job that started from FT_ID
    registry.update_meta(FT_ID, tool_call_threshold=0.7)
    rec = registry.get(name)
    assert rec.meta["job"] == job and "tool_call_threshold" not in rec.meta
    with pytest.raises(InvalidInput, match="is a checkpoint of job") as e:
        registry.update_meta(name, tool_call_threshold=0.5)
    assert "tunery models add" in e.value.hint


def test_update_meta_refuses_unknown_models_by_name(tunery_home):
    from tunery.errors import NotFound
    from tunery.models import registry

    with pytest.raises(NotFound, match="nope"):
        registry.update_meta("nope", tool_call_threshold=0.5)


def test_the_client_sends_the_threshold_only_when_asked():
    from tunery.serving.clients import _payload

    plain = _payload("m", ASK, GenerationParams(tools=(WEATHER,)), stream=False)
    assert "tool_call_threshold" not in plain
    sent = _payload("m", ASK, GenerationParams(tools=(WEATHER,), tool_call_threshold=0.8), stream=False)
    assert sent["tool_call_threshold"] == 0.8 and json.dumps(sent)
