"""The ONNX Runtime engine serves an exported model: directly as a ChatModel, and behind the
OpenAI-compatible server (plain and streamed chat completions through the official SDK)."""

from __future__ import annotations

import threading

import pytest

from support_chat import assert_stream_matches
from tunery.chat import ChatMessage, ChatModel, GenerationParams, Role

HELLO = [ChatMessage(Role.USER, "Hello! Where would you like to go next?")]


@pytest.fixture(scope="module")
def onnx_model(exports):
    from tunery.serving.onnx_engine import OnnxChatModel

    model = OnnxChatModel(exports[("onnx", "none")].path, name="tiny-onnx")
    yield model
    model.close()


def test_generate_matches_the_source_greedy_answer(onnx_model, exports):
    """Greedy text through the engine equals the source model's greedy text from the export check."""
    assert isinstance(onnx_model, ChatModel)
    c = onnx_model.generate(HELLO, GenerationParams(max_tokens=12, temperature=0))
    assert c.finish_reason in ("stop", "length") and c.model == "tiny-onnx"
    assert 0 < c.usage.completion_tokens <= 12 and c.usage.prompt_tokens > 5
    assert c.text.strip()
    report = exports[("onnx", "none")].report
    assert report.greedy_agreement == 1.0 and report.sample["source"] == report.sample["export"]


def test_stream_yields_the_same_text_then_usage(onnx_model):
    assert_stream_matches(onnx_model, HELLO, GenerationParams(max_tokens=10, temperature=0))


def test_seeded_sampling_is_reproducible_and_n_gives_choices(onnx_model):
    p = GenerationParams(max_tokens=8, temperature=1.0, seed=11, n=2)
    a, b = onnx_model.generate(HELLO, p), onnx_model.generate(HELLO, p)
    assert a.choices == b.choices and len(a.choices) == 2
    other = onnx_model.generate(HELLO, GenerationParams(max_tokens=8, temperature=1.0, seed=12, n=2))
    assert other.choices != a.choices


def test_stop_strings_and_max_tokens(onnx_model):
    text = onnx_model.generate(HELLO, GenerationParams(max_tokens=16, temperature=0)).text
    assert len(text) > 2
    cut = text[len(text) // 2:len(text) // 2 + 2]
    stopped = onnx_model.generate(HELLO, GenerationParams(max_tokens=16, temperature=0, stop=(cut,)))
    assert stopped.finish_reason == "stop" and cut not in stopped.text and text.startswith(stopped.text)
    one = onnx_model.generate(HELLO, GenerationParams(max_tokens=1, temperature=0))
    assert one.usage.completion_tokens == 1


def test_concurrent_requests_are_batched_and_all_answered(onnx_model):
    prompts = [[ChatMessage(Role.USER, q)] for q in ("Rome?", "What is the best time of year to travel?",
                                                      "Kyoto, Lima or Oslo?", "Hello!")]
    solo = [onnx_model.generate(m, GenerationParams(max_tokens=8, temperature=0)).text for m in prompts]
    results: dict[int, str] = {}

    def ask(i: int) -> None:
        results[i] = onnx_model.generate(prompts[i], GenerationParams(max_tokens=8, temperature=0)).text

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [results[i] for i in range(len(prompts))] == solo  # float32: batching changes nothing


def _submit_all(engine, prompt_ids, specs, gaps_s=()):
    """Submit one request per ``specs`` entry (``EngineRequest`` keywords) to ``engine``, waiting
    ``gaps_s[i]`` seconds before the i+1-th; returns each request's text, completion tokens and
    finish reason, and the batch sizes the engine formed."""
    import queue
    import time

    from tunery.serving.engine import EngineRequest

    batches: list[int] = []
    generate = engine._generate

    def spy(rows, adapter):
        batches.append(len(rows))
        return generate(rows, adapter)

    engine._generate = spy
    finals: list[queue.Queue] = []
    try:
        for i, kw in enumerate(specs):
            if i and i - 1 < len(gaps_s):
                time.sleep(gaps_s[i - 1])
            q: queue.Queue = queue.Queue()
            finals.append(q)
            engine.submit(EngineRequest(prompt_ids=list(prompt_ids), emit=q.put, index=0, **kw))
        out = []
        for q in finals:
            text, d = "", q.get(timeout=120)
            while not d.final:
                text, d = text + d.text, q.get(timeout=120)
            assert d.error is None, d.error
            out.append((text + d.text, d.completion_tokens, d.finish_reason))
    finally:
        del engine._generate
    return out, batches


def test_ignore_eos_greedy_rows_decode_the_budget_as_when_chosen_here(onnx_model, monkeypatch):
    """A batch of greedy rows that all ignore end-of-turn lets onnxruntime-genai hold it back
    (``min_length``); one sampling row in the batch makes the engine choose every token itself. The
    greedy row's text is the same either way, and it runs to its budget. (The tiny random model
    never ends a turn within it; that the end-of-turn is held back is checked on SmolLM2, in
    tests/serving/test_smollm2.py.)"""
    engine = onnx_model.engine
    monkeypatch.setattr(engine, "batch_window_s", 0.5)  # the two requests below surely share a batch
    ids = onnx_model.target().encode(HELLO)
    greedy = dict(max_tokens=24, temperature=0.0, ignore_eos=True)
    chosen = []
    force = engine._force_choices
    engine._force_choices = lambda gen, rows, *rest: (chosen.append(len(rows)), force(gen, rows, *rest))
    try:
        (alone, *_), batches = _submit_all(engine, ids, [greedy])
        assert batches == [1] and alone[1:] == (24, "length") and chosen == []
        (mixed, sampled), batches = _submit_all(engine, ids,
                                                [greedy, dict(max_tokens=6, temperature=1.0, seed=3, ignore_eos=True)])
    finally:
        del engine._force_choices
    assert batches == [2] and sampled[1] == 6 and chosen and set(chosen) == {2}
    assert mixed == alone


def test_a_burst_spread_over_more_than_one_window_shares_a_batch(exports, monkeypatch):
    """Each request that joins restarts the batch window (up to ``WINDOW_CAP`` windows): requests
    0.6 s apart share one batch under a 1.2 s window, the fourth of which a fixed window would have
    missed (1.8 s after the first); the first one after the cap waits for the next batch. Every
    arrival is at least 0.3 s from the deadline it is meant to meet or miss."""
    from tunery.serving import onnx_engine
    from tunery.serving.onnx_engine import OnnxChatModel

    monkeypatch.setattr(onnx_engine, "WINDOW_CAP", 2.25)  # the cap (2.7 s) halfway between two arrivals
    gap = 0.6
    monkeypatch.setenv("TUNERY_BATCH_WINDOW_MS", "1200")
    model = OnnxChatModel(exports[("onnx", "none")].path)
    try:
        ids = model.target().encode(HELLO)
        req = dict(max_tokens=4, temperature=0.0)
        _, batches = _submit_all(model.engine, ids, [req] * 4, gaps_s=(gap,) * 3)
        assert batches == [4]
        # arrivals at 0, 0.6, ..., 2.4 s join (the cap is at 2.7 s); the sixth, at 3.0 s, does not
        _, batches = _submit_all(model.engine, ids, [req] * 6, gaps_s=(gap,) * 5)
        assert batches == [5, 1]
    finally:
        model.close()


def test_too_long_prompt_is_refused(onnx_model):
    from tunery.errors import InvalidInput

    with pytest.raises(InvalidInput, match="maximum context length"):
        onnx_model.generate([ChatMessage(Role.USER, "Rome " * 2000)], GenerationParams(max_tokens=4))


def test_close_answers_requests_submitted_during_and_after_it(exports):
    from support_chat import assert_close_answers_every_request
    from tunery.serving.onnx_engine import OnnxChatModel

    model = OnnxChatModel(exports[("onnx", "none")].path)  # its own engine: this test closes it
    try:
        assert_close_answers_every_request(model.engine, model.target().encode(HELLO))
    finally:
        model.close()


def test_server_serves_a_deployed_onnx_export(exports, tiny_model):
    """``tunery deploy ./export-dir --name travel-int4`` as the server wiring does it: register the
    export (engine "onnx"), deploy it, then chat through the OpenAI SDK, plain and streamed."""
    import openai

    from tunery.export import register_export
    from tunery.server import ServerThread
    from tunery.serving import deployments
    from tunery.serving.onnx_engine import install

    install()
    rec = register_export(exports[("onnx", "int4")].path)
    deployments.create("travel-int4", rec.id)
    with ServerThread() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)
        r = client.chat.completions.create(model="travel-int4", max_tokens=6, temperature=0,
                                           messages=[{"role": "user", "content": "Hello!"}])
        assert r.choices[0].message.content and r.usage.completion_tokens <= 6
        parts = list(client.chat.completions.create(model="travel-int4", max_tokens=6, temperature=0, stream=True,
                                                    messages=[{"role": "user", "content": "Hello!"}]))
        streamed = "".join(p.choices[0].delta.content or "" for p in parts if p.choices)
        assert streamed == r.choices[0].message.content
