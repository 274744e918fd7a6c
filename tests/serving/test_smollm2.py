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


@pytest.mark.parametrize("adapter", ["none", "default-layers", "all-layers"])
def test_smollm2_batched_on_the_fast_path_answers_as_alone(smollm2, smollm2_dir, monkeypatch, tmp_path, adapter):
    """SmolLM2's int8 copy, questions of different lengths asked together (one batch): each answer
    is the one the question gets alone, token for token, on the base and through a LoRA adapter.
    Left-padded, the shorter prompts attended to their pads and answered otherwise (the builder's
    attention reads a row's length from the mask and expects its tokens first); before the LoRA side
    path had its extra row, an adapter's lone decode took another float kernel and parted from its
    batched run within a few tokens."""
    import threading

    from support_adapters import make_adapter, register_ft
    from tunery.serving.local import LocalChatModel

    monkeypatch.setenv("TUNERY_BATCH_WINDOW_MS", "3000")  # the four requests share one batch, however loaded the machine
    name = "smollm2-135m-instruct"
    if adapter != "none":  # a small random LoRA: the answers stay fluent, the side paths run at every
        # step; on the default layers (20-29) it shares the base's copy, on all 30 it has its own
        ft = "ft:smollm2-135m-instruct:batch:abc"
        layers = list(range(20, 30)) if adapter == "default-layers" else None
        register_ft(make_adapter(smollm2_dir, tmp_path / "peft", scale=0.02, layers=layers), ft_id=ft, parent=name)
        name = ft
    model = LocalChatModel(name, precision="int8")
    questions = ["Which hotel in Lisbon should I book?", "Tipping in Japan?",
                 "What should I pack for a week of hiking in Iceland in late September?",
                 "Is Porto worth a visit in October, and how many days would you give it?"]
    params = GenerationParams(max_tokens=24, temperature=0)
    alone = [model.generate([ChatMessage(Role.USER, q)], params).text for q in questions]
    together: dict[int, str | BaseException] = {}

    def ask(i: int) -> None:
        try:
            together[i] = model.generate([ChatMessage(Role.USER, questions[i])], params).text
        except BaseException as e:  # shown in the assertion, not lost in a thread
            together[i] = e

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(questions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert [together.get(i) for i in range(len(questions))] == alone


def test_smollm2_ignore_eos_on_the_fast_path_runs_past_the_end_of_turn(smollm2):
    """A greedy request with ``ignore_eos`` on SmolLM2's int8 copy: onnxruntime-genai's
    ``min_length`` holds the end-of-turn back (no token is chosen in Python), so the answer runs to
    its budget, and up to where it would have stopped it is the plain answer, token for token."""
    from tunery.serving.local import LocalChatModel

    model = LocalChatModel("smollm2-135m-instruct", precision="int8")
    messages = [ChatMessage(Role.USER, "What is the capital of France? Answer in one short sentence.")]
    params = GenerationParams(max_tokens=40, temperature=0)
    plain = model.generate(messages, params)
    assert plain.finish_reason == "stop" and plain.usage.completion_tokens < 40
    engine = model.target().engine
    forced = []
    engine._force_choices = lambda gen, rows: forced.append(len(rows))
    try:
        run = model.start(messages, params, ignore_eos=True)
        longer = run.collect()
    finally:
        del engine._force_choices
    assert forced == []
    assert longer.finish_reason == "length" and longer.usage.completion_tokens == 40
    assert longer.text.startswith(plain.text) and len(longer.text) > len(plain.text)
