"""The PyTorch engine: continuous batching must not change what a request generates, sampling is
per-request reproducible, and LoRA adapters share one copy of the base weights."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import pytest

from tunery.serving.engine import Adapter, Delta, EngineRequest


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def sharp_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with sharpened attention: random weights spread attention almost evenly,
    which would hide a wrong position or a leak of padding; scaled queries and keys do not."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("sharp") / "model"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("q_proj.weight", "k_proj.weight")):
                p.mul_(6.0)
    model.save_pretrained(out)
    for f in tiny_model_dir.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "generation_config", "chat_template")):
            shutil.copy(f, out / f.name)
    return out


@pytest.fixture(scope="module")
def engine(sharp_model_dir, tokenizer):
    from tunery.serving.torch_engine import TorchEngine

    eng = TorchEngine(sharp_model_dir, tokenizer, [tokenizer.eos_token_id], max_adapters=1)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def hf_model(sharp_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(sharp_model_dir).eval()


def prompt(tokenizer, text: str) -> list[int]:
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                             tokenize=False)
    return tokenizer(rendered, add_special_tokens=False)["input_ids"]


class Sink:
    def __init__(self) -> None:
        self.q: queue.Queue[Delta] = queue.Queue()
        self.deltas: list[Delta] = []

    def wait(self) -> Delta:
        while True:
            d = self.q.get(timeout=60)
            self.deltas.append(d)
            if d.final:
                return d

    @property
    def text(self) -> str:
        return "".join(d.text for d in self.deltas)

    @property
    def logprobs(self) -> list[float]:
        return [e.logprob for d in self.deltas for e in d.logprobs]


def submit(engine, ids, **kw) -> Sink:
    sink = Sink()
    engine.submit(EngineRequest(prompt_ids=ids, emit=sink.q.put, **{"max_tokens": 12, **kw}))
    return sink


def reference(model, ids: list[int], n: int, seed: int, temperature: float = 1.0, top_p: float = 1.0,
              adapter_model=None, logprobs: list[float] | None = None) -> list[int]:
    """What sampling must produce, computed the slow way: the whole sequence again at every step,
    no cache, no batch."""
    import torch

    from tunery.serving.torch_engine import sample_token

    m = adapter_model or model
    gen = torch.Generator().manual_seed(seed)
    seq = list(ids)
    with torch.inference_mode():
        for _ in range(n):
            logits = m(input_ids=torch.tensor([seq])).logits[0, -1]
            seq.append(sample_token(logits, temperature, top_p, gen))
            if logprobs is not None:
                logprobs.append(float(torch.log_softmax(logits.float(), dim=-1)[seq[-1]]))
    return seq[len(ids):]


def same_logprobs(got: list[float], want: list[float]) -> bool:
    """Equal up to float noise: a wrong position or leaked padding moves them by far more."""
    return len(got) == len(want) and all(abs(a - b) < 1e-4 for a, b in zip(got, want, strict=True))


def test_requests_joining_a_running_batch_generate_what_each_would_alone(engine, tokenizer, hf_model):
    """Rows join while others decode (their caches left-padded to the batch, or the batch's to
    theirs) and leave at different times; every row must still match the no-cache reference,
    token for token and log-probability for log-probability."""
    texts = ["What is the best time of year to travel to Kyoto, and where should I stay?", "Hi", "Rome",
             "Tell me about trains, buses, walking tours and the weather in the region, in detail please."]
    ids = [prompt(tokenizer, t) for t in texts]
    lengths = [14, 4, 9, 7]
    sinks: list[Sink] = []

    def start(k: int) -> None:
        sinks.append(submit(engine, ids[k], max_tokens=lengths[k], seed=100 + k, ignore_eos=True, logprobs=0))
        # wait until it is decoding; the first delta is kept in order (put back, it could land after later ones)
        sinks[k].deltas.append(sinks[k].q.get(timeout=60))

    start(0)  # a long prompt decoding alone
    start(1)  # shorter ones join: their caches are padded to the batch's width
    start(2)
    start(3)  # the longest joins last: the batch is padded to its width
    for k, sink in enumerate(sinks):
        last = sink.wait()
        assert last.finish_reason == "length" and last.completion_tokens == lengths[k]
        want_lp: list[float] = []
        want = reference(hf_model, ids[k], lengths[k], seed=100 + k, logprobs=want_lp)
        assert sink.text == tokenizer.decode(want, skip_special_tokens=True)
        assert same_logprobs(sink.logprobs, want_lp)


def test_requests_arriving_together_are_prefilled_together(engine, tokenizer, hf_model):
    """Left-padded batch prefill (with a mask that keeps padding rows finite) must give each row
    exactly what it would get alone. The requests are queued under the queue's lock so that the
    engine wakes to find all of them at once."""
    texts = ["Hello, where to?", "Hi! Rome or Oslo?", "Paris in spring?", "Lima markets?"]
    ids = [prompt(tokenizer, t) for t in texts]
    assert len({len(i) for i in ids}) > 1  # really different lengths: padding is exercised
    sinks = [Sink() for _ in ids]
    before = engine.prefill_passes
    inbox = engine._inbox
    with inbox.mutex:
        for k, (i, sink) in enumerate(zip(ids, sinks, strict=True)):
            inbox._put(EngineRequest(prompt_ids=i, max_tokens=6, emit=sink.q.put, seed=40 + k, ignore_eos=True,
                                     logprobs=0))
            inbox.unfinished_tasks += 1
        inbox.not_empty.notify()
    for k, sink in enumerate(sinks):
        assert sink.wait().completion_tokens == 6
        want_lp: list[float] = []
        want = reference(hf_model, ids[k], 6, seed=40 + k, logprobs=want_lp)
        assert sink.text == tokenizer.decode(want, skip_special_tokens=True)
        assert same_logprobs(sink.logprobs, want_lp)
    assert engine.prefill_passes - before == 1


def test_prefill_groups_keep_padding_small(engine):
    from tunery.serving.torch_engine import _Row

    def row(n: int) -> _Row:
        return _Row(req=EngineRequest(prompt_ids=[1] * n, max_tokens=1, emit=print), adapter="", decoder=None,
                    stop=None, gen=None)

    groups = engine._prefill_groups([row(n) for n in (30, 2000, 40, 35, 1900)])
    assert [[len(r.req.prompt_ids) for r in g] for g in groups] == [[30, 35, 40], [1900, 2000]]


def test_greedy_matches_transformers_generate(engine, tokenizer, hf_model):
    import torch

    ids = prompt(tokenizer, "Where would you like to go next?")
    sink = submit(engine, ids, max_tokens=8, temperature=0.0, ignore_eos=True)
    sink.wait()
    out = hf_model.generate(torch.tensor([ids]), max_new_tokens=8, min_new_tokens=8, do_sample=False)
    assert sink.text == tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)


def test_same_seed_same_answer_different_seed_different_answer(engine, tokenizer):
    ids = prompt(tokenizer, "Hello!")
    a = [submit(engine, ids, seed=7, top_p=0.9) for _ in range(3)]  # batched together
    b = submit(engine, ids, seed=8, top_p=0.9)
    for s in (*a, b):
        s.wait()
    assert a[0].text == a[1].text == a[2].text
    assert b.text != a[0].text


def test_stop_ids_finish_with_stop(tiny_model_dir, tokenizer):
    """Make every token a stop token: the first sampled token ends the answer, counted, no text."""
    from tunery.serving.torch_engine import TorchEngine

    eng = TorchEngine(tiny_model_dir, tokenizer, list(range(len(tokenizer))))
    try:
        sink = submit(eng, prompt(tokenizer, "Hi"), max_tokens=5)
        last = sink.wait()
        assert (last.finish_reason, last.completion_tokens, sink.text) == ("stop", 1, "")
    finally:
        eng.close()


def test_stop_string_cuts_the_answer(engine, tokenizer):
    ids = prompt(tokenizer, "Hi")
    full = submit(engine, ids, max_tokens=20, seed=3, ignore_eos=True)
    full.wait()
    text = full.text
    cut = next((i for i in range(3, len(text)) if not text[i].isspace() and text[i] != "\ufffd"), None)
    if cut is None:
        pytest.skip("the random model produced no usable text")
    stop = text[cut:cut + 2]
    sink = submit(engine, ids, max_tokens=20, seed=3, ignore_eos=True, stop=(stop,))
    last = sink.wait()
    assert last.finish_reason == "stop"
    assert sink.text == text[:text.index(stop)]
    assert stop not in sink.text


def test_cancel_ends_a_request_with_an_error(engine, tokenizer):
    sink = Sink()
    req = EngineRequest(prompt_ids=prompt(tokenizer, "Hi"), max_tokens=10_000, emit=sink.q.put, ignore_eos=True)
    engine.submit(req)
    sink.q.put(sink.q.get(timeout=60))  # started
    req.cancelled.set()
    last = sink.wait()
    assert last.error is not None and last.completion_tokens < 10_000


def test_close_answers_requests_submitted_during_and_after_it(tiny_model_dir, tokenizer):
    from support_chat import assert_close_answers_every_request
    from tunery.serving.torch_engine import TorchEngine

    eng = TorchEngine(tiny_model_dir, tokenizer, [tokenizer.eos_token_id])
    try:
        assert_close_answers_every_request(eng, prompt(tokenizer, "Hi"))
    finally:
        eng.close()


def test_a_failing_engine_loop_answers_every_request():
    """An engine whose loop dies answers what it held and what waits in its inbox with the
    loop's error, and every later request at once."""
    from tunery.serving.engine import ThreadedEngine

    class Failing(ThreadedEngine):
        def __init__(self) -> None:
            self.name, self.go, self.held = "failing", threading.Event(), []
            self._start("tunery-test-failing")

        def _loop(self) -> None:
            self.go.wait(30)
            self.held.append(self._inbox.get())
            raise ValueError("boom")

        def _fail_all(self, error: BaseException) -> None:
            for req in self.held:
                req.emit(Delta(req.index, error=error))

    eng = Failing()
    sinks = [Sink() for _ in range(4)]
    for i, s in enumerate(sinks[:3]):
        eng.submit(EngineRequest(prompt_ids=[1], max_tokens=1, emit=s.q.put, index=i))
    eng.go.set()
    assert [str(s.wait().error) for s in sinks[:3]] == ["boom"] * 3
    eng.submit(EngineRequest(prompt_ids=[1], max_tokens=1, emit=sinks[3].q.put, index=3))
    assert "closed" in str(sinks[3].wait().error)
    eng.close()


def _adapter(path: Path) -> Adapter:
    return Adapter(key=str(path), path=path)


def test_lora_rows_use_their_adapter_beside_base_rows(engine, tokenizer, hf_model, lora_dirs):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ids = prompt(tokenizer, "Rome or Paris?")
    sinks = {name: submit(engine, ids, seed=5, max_tokens=8, ignore_eos=True, adapter=adapter)
             for name, adapter in [("base", None), ("lora", _adapter(lora_dirs[0]))]}
    for s in sinks.values():
        s.wait()
    ft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(hf_model.name_or_path), lora_dirs[0]).eval()
    assert sinks["base"].text == tokenizer.decode(reference(hf_model, ids, 8, 5), skip_special_tokens=True)
    assert sinks["lora"].text == tokenizer.decode(reference(hf_model, ids, 8, 5, adapter_model=ft),
                                                  skip_special_tokens=True)
    assert sinks["lora"].text != sinks["base"].text
    assert engine.adapters.base is not None and engine.adapters.peft.base_model.model is engine.adapters.base


def test_idle_adapters_are_evicted_least_recently_used(engine, tokenizer, lora_dirs):
    ids = prompt(tokenizer, "Hi")
    for d in (lora_dirs[0], lora_dirs[1], lora_dirs[0]):  # max_adapters=1 on this engine
        submit(engine, ids, max_tokens=2, adapter=_adapter(d)).wait()
        assert engine.adapters.loaded == [str(d)]


def test_a_broken_adapter_fails_only_its_request(engine, tokenizer, tmp_path):
    ids = prompt(tokenizer, "Hi")
    bad = submit(engine, ids, adapter=_adapter(tmp_path))
    good = submit(engine, ids, max_tokens=3)
    assert bad.wait().error is not None
    assert good.wait().finish_reason in ("stop", "length")


def test_many_threads_submitting_at_once(engine, tokenizer):
    ids = prompt(tokenizer, "Hi")
    results: list[Delta] = []

    def one(seed: int) -> None:
        results.append(submit(engine, ids, max_tokens=5, seed=seed, ignore_eos=True).wait())

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]  # more than max_batch
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 20 and all(r.completion_tokens == 5 for r in results)
    deadline = time.monotonic() + 30  # the loop finishes its step just after the last answer
    while engine.busy() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not engine.busy() and engine._rows == [] and engine._cache is None


def test_adapters_are_evicted_when_memory_is_short(tiny_model_dir, lora_dirs, monkeypatch):
    from transformers import AutoModelForCausalLM

    from tunery.serving import adapters
    from tunery.serving.adapters import PeftAdapters

    pool = PeftAdapters(AutoModelForCausalLM.from_pretrained(tiny_model_dir), max_adapters=8)
    first = pool.acquire(_adapter(lora_dirs[0]))
    pool.release(first)
    monkeypatch.setattr(adapters, "available_memory", lambda: 1024)  # far below the floor
    busy = pool.acquire(_adapter(lora_dirs[1]))
    assert pool.loaded == [str(lora_dirs[1])]  # the idle, older one went; the new one stays
    pool.acquire(_adapter(lora_dirs[0]))
    assert pool.loaded == [str(lora_dirs[1]), str(lora_dirs[0])]  # in use: kept despite the shortage
    pool.release(busy)


def test_on_a_gpu_its_free_memory_decides_eviction_not_the_hosts(monkeypatch):
    """Adapters on a GPU take the GPU's memory: plenty of host memory must not hide a full GPU."""
    import torch

    from tunery.serving import adapters
    from tunery.serving.adapters import PeftAdapters

    class OnGpu(torch.nn.Module):
        def parameters(self, recurse=True):
            yield torch.nn.Parameter(torch.empty(0, device="meta")).requires_grad_(False)

    pool = PeftAdapters(OnGpu())
    monkeypatch.setattr(adapters, "available_memory", lambda: 1 << 40)  # the host: plenty
    assert not pool._memory_short()  # a meta tensor is not on a GPU: the host decides
    monkeypatch.setattr(torch.Tensor, "device", property(lambda t: torch.device("cuda", 0)))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1024, 1 << 34))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 1 << 30)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 1 << 30)
    assert pool._memory_short()
    # what PyTorch caches unused (an evicted adapter's) is free to the pool, though not to the driver
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: (1 << 30) - (1 << 29))
    assert not pool._memory_short()


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_a_gpu_engine_answers_as_the_cpu_one(sharp_model_dir, tokenizer):
    """On a GPU the engine runs there (``runtime.default_device``): prompts of different lengths
    batched together, greedy and seeded sampling, give the CPU engine's answers token for token."""
    from tunery.serving.torch_engine import TorchEngine

    engines = {d: TorchEngine(sharp_model_dir, tokenizer, [tokenizer.eos_token_id], device=d) for d in ("cpu", "cuda")}
    try:
        assert str(next(engines["cuda"].adapters.base.parameters()).device).startswith("cuda")
        answers = {}
        for d, eng in engines.items():
            sinks = [submit(eng, prompt(tokenizer, q), seed=3, temperature=t, ignore_eos=True)
                     for q in ("Hi", "Where would you like to go next summer?") for t in (0.0, 0.8)]
            answers[d] = [(s.wait(), s.text)[1] for s in sinks]
        assert answers["cuda"] == answers["cpu"]
    finally:
        for eng in engines.values():
            eng.close()
