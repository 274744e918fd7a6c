"""Serving a LoRA fine-tune on the fast path (its base's compiled int8 copy, the fine-tune as an
adapter over it), against its peers in the same run:

1. one HTTP stream of the fine-tune (default deployment: int8) against llama.cpp in-process
   (llama-cpp-python) on the fine-tune's 4-bit GGUF and plain ``transformers`` ``generate``
   (float32, adapter merged); the same fine-tune at ``--precision int4`` and ``fp32`` for context.
   Goal: int8 >= 1.5x llama.cpp;
2. ``--streams`` concurrent streams: aggregate tokens/s against one stream's. Goal: >= 3x;
3. ``--clients`` clients streaming for ``--duration`` seconds: requests/s, latency and first-token
   p50/p99, errors. Goal: no errors;
4. the server's resident memory with the base served alone against after ``--adapters`` distinct
   LoRA fine-tunes of it (copies of the fine-tune with perturbed ``lora_B``) were each served once.
   Goal: within 20% of the base alone;
5. a tiny fine-tuning job through the API (``/v1/files``, ``/v1/fine_tuning/jobs``, 1 epoch) while
   the base is served: seconds from the job's ``finished_at`` to the new fine-tune's first
   streamed token. Goal: <= 30 s.

The server runs as a separate ``tunery serve`` process (worker on), so clients and server do not
share a GIL; section 4 gets a fresh one (worker off), so its memory is the base's and the
adapters' alone. Every stream generates exactly ``--tokens`` tokens (end-of-turn ignored). Without
``--fine-tune``, a small fine-tune is trained first through the API and the run says so. Figures
are printed, not asserted. Use a ``TUNERY_HOME`` of the benchmark's own.

    TUNERY_HOME=/tmp/bench-home python benchmarks/serve_throughput.py [--fine-tune NAME]
        [--sections 1,2,3,4,5] [--tokens 64] [--streams 8] [--clients 50] [--duration 60]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

PROMPTS = [
    "Plan a three-day trip to Rome for a family with two children.",
    "What is the best time of year to visit Kyoto, and why?",
    "Suggest a walking tour of Lisbon's old town.",
    "How do I get from Paris to Oslo by train?",
    "What should I pack for a week in Cairo in summer?",
    "Recommend markets and festivals in Lima.",
    "Write a short story about a lost suitcase in Oslo.",
    "Which museums in Paris are free on Sundays?",
]
TRAVEL = Path(__file__).resolve().parents[1] / "src" / "tunery" / "examples" / "travel" / "train.jsonl"


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def pct(xs: list[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0-100) of ``xs``; 0 when empty."""
    if not xs:
        return 0.0
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


# --- the HTTP side -----------------------------------------------------------------------------


class StreamError(Exception):
    """A stream that did not deliver its answer: a status, an error event or a short answer."""


def stream_once(base: str, model: str, prompt: str, tokens: int, client: httpx.Client | None = None
                ) -> tuple[int, float, float]:
    """One streamed chat completion: (completion tokens, seconds, seconds to the first token)."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True}
    t = time.perf_counter()
    first = None
    used = 0
    with (client or httpx).stream("POST", f"{base}/chat/completions", json=body, timeout=600) as r:
        if r.status_code != 200:
            raise StreamError(f"HTTP {r.status_code}: {r.read().decode()[:300]}")
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            obj = json.loads(line[6:])
            if obj.get("error"):
                raise StreamError(f"error event: {json.dumps(obj['error'])[:300]}")
            if obj.get("choices") and obj["choices"][0]["delta"].get("content") and first is None:
                first = time.perf_counter() - t
            if obj.get("usage"):
                used = obj["usage"]["completion_tokens"]
    if used != tokens:
        raise StreamError(f"{used} completion tokens, not {tokens}")
    return used, time.perf_counter() - t, first or 0.0


def stream_rate(base: str, model: str, prompt: str, tokens: int) -> float:
    n, dt, _ = stream_once(base, model, prompt, tokens)
    return n / dt


def concurrent(base: str, model: str, clients: int, tokens: int) -> tuple[float, list[float]]:
    """``clients`` streams started together: aggregate tokens/s and each stream's own tokens/s."""
    results: list[tuple[int, float, float] | Exception] = [StreamError("not run")] * clients
    barrier = threading.Barrier(clients)

    def one(i: int) -> None:
        barrier.wait()
        try:
            results[i] = stream_once(base, model, PROMPTS[i % len(PROMPTS)], tokens)
        except (StreamError, httpx.HTTPError) as e:
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t
    failed = [r for r in results if isinstance(r, Exception)]
    if failed:
        raise StreamError(f"{len(failed)} of {clients} streams failed, e.g. {failed[0]}")
    return sum(n for n, _, _ in results) / wall, [n / dt for n, dt, _ in results]


class Server:
    """``tunery serve`` on a free loopback port, in its own process."""

    def __init__(self, *, worker: bool, env: dict[str, str] | None = None) -> None:
        from tunery.server.run import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        cmd = [sys.executable, "-m", "tunery.cli.main", "serve", "--port", str(self.port), "--log-level", "warning"]
        self.proc = subprocess.Popen(cmd + ([] if worker else ["--no-worker"]), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env={**os.environ, "TUNERY_API_KEY": "", **(env or {})})
        self.http = httpx.Client(base_url=self.url, timeout=120)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"tunery serve exited: {self.proc.stderr.read().decode()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.proc.kill()
        raise SystemExit("tunery serve did not start within 120 s")

    def rss_mib(self) -> float:
        """Resident memory of the server process and any children it started."""
        import psutil

        p = psutil.Process(self.proc.pid)
        return sum(q.memory_info().rss for q in [p, *p.children(recursive=True)]) / 2**20

    def deploy(self, name: str, model: str, precision: str) -> None:
        """A deployment of ``model`` at ``precision`` with the content filter off, as the plain model
        name has none."""
        self.http.delete(f"/deployments/{name}")  # from an earlier run; a 404 is fine
        r = self.http.post("/deployments", json={"name": name, "model": model, "precision": precision,
                                                 "content_filter": "off"})
        if r.status_code != 200:
            raise SystemExit(f"could not create deployment {name}: {r.status_code} {r.text}")

    def stop(self) -> None:
        self.http.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def fine_tune(server: Server, base_model: str, examples: int, suffix: str) -> tuple[dict, float]:
    """Train a LoRA fine-tune of ``base_model`` through the API on the first ``examples`` bundled
    travel chats, 1 epoch: (the finished job, wall-clock time when the poll saw it succeed)."""
    lines = TRAVEL.read_text().splitlines()[:examples]
    up = server.http.post("/files", files={"file": ("bench-train.jsonl", ("\n".join(lines) + "\n").encode(),
                                                    "application/jsonl")}, data={"purpose": "fine-tune"})
    if up.status_code != 200:
        raise SystemExit(f"upload failed: {up.status_code} {up.text}")
    r = server.http.post("/fine_tuning/jobs", json={
        "model": base_model, "training_file": up.json()["id"], "suffix": suffix,
        "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}}})
    if r.status_code != 200:
        raise SystemExit(f"job refused: {r.status_code} {r.text}")
    job_id = r.json()["id"]
    t0, said = time.monotonic(), 0.0
    while True:
        job = server.http.get(f"/fine_tuning/jobs/{job_id}").json()
        if job["status"] == "succeeded":
            return job, time.time()
        if job["status"] in ("failed", "cancelled"):
            raise SystemExit(f"fine-tuning job {job_id} {job['status']}: {job.get('error')}")
        if time.monotonic() - said > 30:
            said = time.monotonic()
            print(f"  job {job_id}: {job['status']} after {said - t0:.0f} s", flush=True)
        time.sleep(0.1)


# --- the in-process peers ----------------------------------------------------------------------


def prompt_ids(tok, prompt: str) -> list[int]:
    text = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False)
    return tok(text, add_special_tokens=False)["input_ids"]


class Transformers:
    """Plain transformers generate of the fine-tune in float32, adapter merged (greedy, batch of one)."""

    def __init__(self, model_id: str, prompt: str) -> None:
        import torch

        from tunery.models.loading import load_model

        self.model, tok, _ = load_model(model_id, merge=True)
        self.pad = tok.pad_token_id
        self.ids = torch.tensor([prompt_ids(tok, prompt)])

    def rate(self, tokens: int) -> float:
        import torch

        with torch.inference_mode():
            t = time.perf_counter()
            out = self.model.generate(self.ids, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                                      pad_token_id=self.pad)
            return (out.shape[1] - self.ids.shape[1]) / (time.perf_counter() - t)


class LlamaCpp:
    """llama.cpp in-process on a GGUF: the same prompt ids, greedy, each token detokenized as a
    stream would be, end-of-turn ignored (``Llama.generate`` does not stop on it)."""

    def __init__(self, gguf: Path, ids: list[int], tokens: int, threads: int) -> None:
        from llama_cpp import Llama

        self.llm = Llama(model_path=str(gguf), n_ctx=max(512, len(ids) + tokens + 16), n_threads=threads,
                         n_threads_batch=threads, n_batch=512, verbose=False)
        self.ids = ids

    def rate(self, tokens: int) -> float:
        t = time.perf_counter()
        made = 0
        for tok in self.llm.generate(self.ids, top_k=1, temp=0.0, reset=True):
            self.llm.detokenize([tok])
            made += 1
            if made >= tokens:
                break
        return made / (time.perf_counter() - t)


def gguf_export(model: str, quantize: str) -> Path:
    """The fine-tune's GGUF, exported with ``tunery export`` once per adapter version."""
    from tunery.home import home
    from tunery.models import registry

    rec = registry.get(model)
    weights = rec.path / "adapter_model.safetensors"
    stamp = weights.stat().st_mtime_ns if weights.exists() else rec.created_at
    out = home().root / "bench" / f"{model.replace(':', '_')}-{stamp}-{quantize}"
    gguf = out / f"model-{quantize}.gguf"
    if not (out / "tunery-export.json").exists():
        print(f"  exporting {model} to GGUF {quantize} ...", flush=True)
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "tunery.cli.main", "export", model, "--format", "gguf",
                            "--quantize", quantize, "-o", str(out), "--force"], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"tunery export failed: {(r.stderr or r.stdout).strip()[-500:]}")
        print(f"  exported in {time.perf_counter() - t:.0f} s", flush=True)
    return gguf


# --- the sections ------------------------------------------------------------------------------


def section1(server: Server, ft: str, args) -> None:
    """One stream: the fast path against llama.cpp and transformers, and at int4 and fp32."""
    print(f"\n[1] one stream of {ft}, {args.tokens} tokens, best of {args.repeats} rounds")
    prompt = PROMPTS[0]
    server.deploy("bench-int4", ft, "int4")
    server.deploy("bench-fp32", ft, "fp32")
    peers: dict[str, object] = {}
    plain = Transformers(ft, prompt)
    peers["transformers generate (fp32, merged)"] = plain
    llama_note = None
    try:
        import llama_cpp  # noqa: F401
    except (ImportError, OSError):  # OSError: its shared library would not load
        llama_note = "llama-cpp-python is not installed (pip install 'tunery[bench]')"
    if llama_note is None:
        try:
            ids = plain.ids[0].tolist()
            peers[f"llama.cpp GGUF {args.gguf} (in-process)"] = LlamaCpp(gguf_export(ft, args.gguf), ids,
                                                                       args.tokens, args.threads or os.cpu_count())
        except (RuntimeError, ValueError, OSError) as e:
            llama_note = str(e)
    served = {"int8 fast path (default)": ft, "int4 fast path": "bench-int4", "fp32 PyTorch engine": "bench-fp32"}
    for name, model in served.items():  # loads each engine, builds each compiled copy the first time
        t = time.perf_counter()
        stream_once(server.url, model, prompt, 8)
        print(f"  {name}: first request (loads the engine, builds its copy if new) {time.perf_counter() - t:.1f} s",
              flush=True)
    for peer in peers.values():
        peer.rate(8)  # warm-up
    rounds: dict[str, list[float]] = {name: [] for name in [*served, *peers]}
    for _ in range(args.repeats):  # interleaved, so load from elsewhere hits every figure alike
        for name, peer in peers.items():
            rounds[name].append(peer.rate(args.tokens))
        for name, model in served.items():
            rounds[name].append(stream_rate(server.url, model, prompt, args.tokens))
    best = {name: max(xs) for name, xs in rounds.items()}
    for name, xs in rounds.items():
        print(f"  {name:42s} {best[name]:7.1f} tokens/s   (rounds: {', '.join(f'{x:.1f}' for x in xs)})")
    if llama_note:
        print(f"  llama.cpp: unavailable - {llama_note}")
    fast = best["int8 fast path (default)"]
    for name in rounds:
        if name != "int8 fast path (default)":
            print(f"  int8 fast path / {name:36s} {fast / best[name]:5.2f}x")
    llama = next((v for k, v in best.items() if k.startswith("llama.cpp")), None)
    if llama is None:
        print("  goal: int8 stream >= 1.5x llama.cpp           not measured (llama.cpp unavailable)")
    else:
        print(f"  goal: int8 stream >= 1.5x llama.cpp           {met(fast >= 1.5 * llama)} ({fast / llama:.2f}x)")


def section2(server: Server, ft: str, args) -> None:
    print(f"\n[2] {args.streams} concurrent streams of {ft} against one, {args.tokens} tokens, "
          f"best of {args.repeats} rounds")
    concurrent(server.url, ft, 2, 8)  # warms the batched path
    singles, totals = [], []
    for _ in range(args.repeats):
        singles.append(stream_rate(server.url, ft, PROMPTS[0], args.tokens))
        totals.append(concurrent(server.url, ft, args.streams, args.tokens))
    single = max(singles)
    total, each = max(totals, key=lambda t: t[0])
    print(f"  1 stream                {single:7.1f} tokens/s   (rounds: {', '.join(f'{x:.1f}' for x in singles)})")
    print(f"  {args.streams} streams, aggregate    {total:7.1f} tokens/s   each stream {min(each):.1f}-{max(each):.1f}; "
          f"rounds: {', '.join(f'{t:.1f}' for t, _ in totals)}")
    print(f"  goal: {args.streams} streams >= 3x one stream          {met(total >= 3 * single)} ({total / single:.2f}x)")


def many_clients(url: str, model: str, clients: int, duration: float, tokens: int) -> dict:
    """``clients`` clients, each with its own connection, streaming ``model`` one request after
    another for ``duration`` seconds (requests started before the deadline run to their end):
    each request's latency and time to first token, the errors, and the wall time."""
    lat: list[float] = []
    first: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(i: int) -> None:
        with httpx.Client(timeout=600) as http:
            barrier.wait()
            k = i
            while time.monotonic() < stop_at[0]:
                try:
                    _, dt, ttft = stream_once(url, model, PROMPTS[k % len(PROMPTS)], tokens, http)
                    with lock:
                        lat.append(dt)
                        first.append(ttft)
                except (StreamError, httpx.HTTPError, json.JSONDecodeError) as e:
                    with lock:
                        errors.append(f"{type(e).__name__}: {e}")
                k += 1

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for th in threads:
        th.start()
    stop_at[0] = time.monotonic() + duration
    t = time.perf_counter()
    barrier.wait()
    for th in threads:
        th.join()
    return {"latency": lat, "first_token": first, "errors": errors, "wall": time.perf_counter() - t}


def section3(server: Server, ft: str, args) -> None:
    print(f"\n[3] {args.clients} clients streaming {ft} for {args.duration:.0f} s, {args.tokens} tokens each")
    out = many_clients(server.url, ft, args.clients, args.duration, args.tokens)
    lat, first, errors, wall = out["latency"], out["first_token"], out["errors"], out["wall"]
    print(f"  {len(lat)} requests in {wall:.1f} s: {len(lat) / wall:.2f} requests/s, "
          f"{len(lat) * args.tokens / wall:.1f} tokens/s")
    print(f"  latency      p50 {pct(lat, 50):6.2f} s   p99 {pct(lat, 99):6.2f} s")
    print(f"  first token  p50 {pct(first, 50):6.2f} s   p99 {pct(first, 99):6.2f} s")
    print(f"  errors {len(errors)}" + (f", e.g. {errors[0]}" if errors else ""))
    print(f"  goal: no errors                               {met(not errors and bool(lat))}")


def make_adapters(ft: str, n: int) -> list[str]:
    """``n`` distinct LoRA fine-tunes of ``ft``'s base: copies of its adapter with each ``lora_B``
    tensor scaled by a random factor per copy, registered as fine-tunes of the same base."""
    import torch
    from safetensors.torch import load_file, save_file

    from tunery.home import home
    from tunery.models import registry
    from tunery.models.registry import ModelRecord

    rec = registry.get(ft)
    names = []
    for i in range(n):
        name = f"bench-lora-{i}"
        folder = home().root / "bench" / "adapters" / name
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(rec.path, folder)
        weights = folder / "adapter_model.safetensors"
        tensors = load_file(str(weights))
        gen = torch.Generator().manual_seed(i)
        for key, value in tensors.items():
            if "lora_B" in key:
                tensors[key] = value * (1 + 0.5 * torch.randn(value.shape, generator=gen))
        save_file(tensors, str(weights), metadata={"format": "pt"})
        registry.register(ModelRecord(id=name, kind="fine-tuned", path=folder, source="benchmark",
                                      parent=rec.parent, method="lora", meta=dict(rec.meta)), replace=True)
        names.append(name)
    return names


def section4(ft: str, base_model: str, args) -> None:
    print(f"\n[4] server memory: {base_model} served alone against after {args.adapters} LoRA fine-tunes of it "
          "were each served once (a fresh server, worker off)")
    names = make_adapters(ft, args.adapters)
    server = Server(worker=False)
    try:
        idle = server.rss_mib()
        stream_once(server.url, base_model, PROMPTS[0], args.tokens)
        time.sleep(1)
        alone = server.rss_mib()
        for i in range(len(names)):  # the control: as many requests, no new fine-tune
            stream_once(server.url, base_model, PROMPTS[i % len(PROMPTS)], args.tokens)
        again = server.rss_mib()
        after = []
        for i, name in enumerate(names):
            stream_once(server.url, name, PROMPTS[i % len(PROMPTS)], args.tokens)
            after.append(server.rss_mib())
        time.sleep(1)
        final = server.rss_mib()
    finally:
        server.stop()
    print(f"  server RSS: started {idle:.0f} MiB, base served {alone:.0f} MiB (after {len(names)} more requests to "
          f"it: {again:.0f} MiB), after {len(names)} fine-tunes "
          f"{final:.0f} MiB (+{(final / alone - 1) * 100:.1f}%; after each: {', '.join(f'{x:.0f}' for x in after)})")
    print(f"  goal: within 20% of the base alone            {met(final <= 1.2 * alone)}")


def section5(server: Server, base_model: str, args) -> None:
    print(f"\n[5] from a fine-tuning job's end to its first fast-path token ({args.job_examples} examples, 1 epoch)")
    stream_once(server.url, base_model, PROMPTS[0], 8)  # the base is served already
    job, seen = fine_tune(server, base_model, args.job_examples, "benchnew")
    start = time.time()
    _, _, ttft = stream_once(server.url, job["fine_tuned_model"], PROMPTS[1], args.tokens)
    first_at = start + ttft
    print(f"  job {job['id']} -> {job['fine_tuned_model']}: trained in {job['finished_at'] - job['created_at']} s")
    gap = first_at - job["finished_at"]
    print(f"  finished_at -> first token {gap:5.1f} s (finished_at has whole seconds); "
          f"job seen succeeded -> first token {first_at - seen:.1f} s")
    print(f"  goal: <= 30 s                                 {met(gap <= 30)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fine-tune", help="a registered LoRA fine-tune (default: train a small one through the API)")
    ap.add_argument("--base", default="smollm2-135m-instruct", help="base model to train on without --fine-tune")
    ap.add_argument("--sections", default="1,2,3,4,5", help="which sections to run, e.g. 1,2")
    ap.add_argument("--tokens", type=int, default=64, help="tokens generated per request")
    ap.add_argument("--streams", type=int, default=8, help="concurrent streams in section 2")
    ap.add_argument("--clients", type=int, default=50, help="concurrent clients in section 3")
    ap.add_argument("--duration", type=float, default=60, help="seconds of load in section 3")
    ap.add_argument("--adapters", type=int, default=10, help="distinct fine-tunes in section 4")
    ap.add_argument("--train-examples", type=int, default=32, help="examples for the fine-tune trained without --fine-tune")
    ap.add_argument("--job-examples", type=int, default=10,
                    help="examples for section 5's job (the API wants 10 at least)")
    ap.add_argument("--gguf", default="q4_1", choices=["q4_0", "q4_1"], help="4-bit GGUF type for llama.cpp")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads for every engine and peer (default: each one's own choice)")
    ap.add_argument("--repeats", type=int, default=3, help="measured rounds in sections 1 and 2 (best kept)")
    args = ap.parse_args()
    sections = {int(s) for s in args.sections.split(",") if s.strip()}

    import torch

    from tunery.home import home
    from tunery.models import ensure, registry

    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["TUNERY_NUM_THREADS"] = str(args.threads)  # the server process
    print(f"TUNERY_HOME {home().root}, {args.tokens} tokens per request, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs, precision env "
          f"{os.environ.get('TUNERY_PRECISION') or 'unset (int8)'}")

    # three engines in section 1 (int8, int4, fp32): room for all, so no round times a reload
    server = Server(worker=True, env={"TUNERY_MAX_ENGINES": "3"})
    try:
        if args.fine_tune:
            ft = registry.get(args.fine_tune)
            if not ft.is_adapter:
                raise SystemExit(f"{ft.id} is not a LoRA fine-tune")
        else:
            ensure(args.base)
            print(f"no --fine-tune: training one through the API ({args.train_examples} travel examples, 1 epoch) ...",
                  flush=True)
            job, _ = fine_tune(server, args.base, args.train_examples, "bench")
            ft = registry.get(job["fine_tuned_model"])
            print(f"  trained {ft.id} in {job['finished_at'] - job['created_at']} s")
        base_model = ft.parent
        print(f"fine-tune {ft.id} of {base_model}")
        if 1 in sections:
            section1(server, ft.id, args)
        if 2 in sections:
            section2(server, ft.id, args)
        if 3 in sections:
            section3(server, ft.id, args)
        if 5 in sections:
            section5(server, base_model, args)
    finally:
        server.stop()
    if 4 in sections:
        section4(ft.id, base_model, args)


if __name__ == "__main__":
    main()
