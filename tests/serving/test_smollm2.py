"""The real SmolLM2-135M-Instruct through the engine: it answers, stops at its end-of-turn token,
and greedy decoding matches transformers' own generate."""

from __future__ import annotations

import pytest

from tunery.chat import ChatMessage, Role
from tunery.serving import GenerationParams

pytestmark = pytest.mark.slow


def test_smollm2_answers_and_stops_like_transformers(smollm2):
    import torch

    from tunery.models.loading import load_model, stop_token_ids
    from tunery.serving.local import LocalChatModel

    messages = [ChatMessage(Role.USER, "What is the capital of France? Answer in one short sentence.")]
    done = LocalChatModel("smollm2-135m-instruct").generate(messages, GenerationParams(max_tokens=40, temperature=0))
    assert "Paris" in done.text and done.finish_reason == "stop"

    model, tok, rec = load_model("smollm2-135m-instruct")
    text = tok.apply_chat_template([m.to_dict() for m in messages], add_generation_prompt=True, tokenize=False)
    ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=40, do_sample=False, eos_token_id=stop_token_ids(tok, rec.path),
                             pad_token_id=tok.pad_token_id)
    new = out[0, ids.shape[1]:]
    assert done.usage.prompt_tokens == ids.shape[1]
    assert done.usage.completion_tokens == len(new)  # the end-of-turn token counts
    assert done.text == tok.decode(new, skip_special_tokens=True)
