"""Serving throughput on loopback, in one run:

1. plain ``transformers`` ``model.generate`` (greedy, batch of one): the baseline;
2. one streaming client through ``tunery serve``'s HTTP API, same model, same prompt, same
   number of tokens;
3. eight concurrent streaming clients: their aggregate tokens/s against the single stream's.

Goals: (2) at least as fast as (1); (3) at least 3x (2). The figures are printed, not asserted.
The server runs as a separate ``tunery serve`` process so the clients do not share its CPU time
slices (or its GIL). Every side generates exactly ``--tokens`` tokens (end-of-turn is ignored).

    python benchmarks/serve_throughput.py [--model smollm2-135m-instruct] [--tokens 64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

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


class Baseline:
    """Plain transformers generate on the same model and prompt (greedy, batch of one)."""

    def __init__(self, model_id: str, prompt: str) -> None:
        import torch

        from tunery.models.loading import load_model

        self.model, tok, _ = load_model(model_id)
        self.pad = tok.pad_token_id
        text = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                       tokenize=False)
        self.ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])

    def rate(self, tokens: int) -> float:
        import torch

        with torch.inference_mode():
            t = time.perf_counter()
            out = self.model.generate(self.ids, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                                      pad_token_id=self.pad)
            return (out.shape[1] - self.ids.shape[1]) / (time.perf_counter() - t)


def stream_once(base: str, model: str, prompt: str, tokens: int) -> tuple[int, float, float]:
    """One streamed chat completion: (completion tokens, seconds, seconds to the first token)."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True}
    t = time.perf_counter()
    first = None
    used = 0
    with httpx.stream("POST", f"{base}/chat/completions", json=body, timeout=600) as r:
        if r.status_code != 200:
            raise SystemExit(f"server answered {r.status_code}: {r.read().decode()}")
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            obj = json.loads(line[6:])
            if obj.get("choices") and obj["choices"][0]["delta"].get("content") and first is None:
                first = time.perf_counter() - t
            if obj.get("usage"):
                used = obj["usage"]["completion_tokens"]
    return used, time.perf_counter() - t, first or 0.0


def concurrent(base: str, model: str, clients: int, tokens: int) -> tuple[float, list[float]]:
    """``clients`` streams started together: aggregate tokens/s and each stream's own tokens/s."""
    results: list[tuple[int, float, float]] = [(0, 0.0, 0.0)] * clients
    barrier = threading.Barrier(clients)

    def one(i: int) -> None:
        barrier.wait()
        results[i] = stream_once(base, model, PROMPTS[i % len(PROMPTS)], tokens)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t
    return sum(n for n, _, _ in results) / wall, [n / dt for n, dt, _ in results]


def start_server(port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "tunery.cli.main", "serve", "--port", str(port), "--no-worker",
                             "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "TUNERY_API_KEY": ""})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"tunery serve exited: {proc.stderr.read().decode()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("tunery serve did not start within 120 s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct", help="registered or catalog model")
    ap.add_argument("--tokens", type=int, default=64, help="tokens generated per request")
    ap.add_argument("--clients", type=int, default=8, help="concurrent streaming clients")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads on both sides (default: torch's choice)")
    ap.add_argument("--repeats", type=int, default=3, help="measured runs of each figure (best kept)")
    args = ap.parse_args()

    import torch

    from tunery.models import ensure
    from tunery.server.run import free_port

    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["TUNERY_NUM_THREADS"] = str(args.threads)  # the server process

    rec = ensure(args.model)  # pulls a catalog model on first use
    prompt = PROMPTS[0]
    print(f"model {rec.id}, {args.tokens} tokens per request, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs")

    plain_model = Baseline(rec.id, prompt)
    plain_model.rate(8)  # warm-up
    port = free_port()
    proc = start_server(port)
    base = f"http://127.0.0.1:{port}/v1"
    # rounds of (plain, one stream, N streams); the best of each figure is kept, so that load from
    # other processes on a shared machine hits every figure alike
    try:
        stream_once(base, rec.id, prompt, 8)  # loads the model into the server
        concurrent(base, rec.id, 2, 8)  # and warms the batched path
        plains, singles, ttfts, totals = [], [], [], []
        for _ in range(args.repeats):
            plains.append(plain_model.rate(args.tokens))
            n, dt, first = stream_once(base, rec.id, prompt, args.tokens)
            singles.append(n / dt)
            ttfts.append(first)
            totals.append(concurrent(base, rec.id, args.clients, args.tokens))
        plain, single = max(plains), max(singles)
        total, each = max(totals, key=lambda t: t[0])
        print(f"plain transformers generate      {plain:7.1f} tokens/s   (rounds: "
              f"{', '.join(f'{x:.1f}' for x in plains)})")
        print(f"HTTP API, 1 stream               {single:7.1f} tokens/s   ({single / plain:.2f}x plain generate; "
              f"first token after {statistics.median(ttfts) * 1000:.0f} ms; rounds: "
              f"{', '.join(f'{x:.1f}' for x in singles)})")
        print(f"HTTP API, {args.clients} concurrent streams    {total:7.1f} tokens/s   aggregate, "
              f"{total / single:.2f}x one stream; each stream {min(each):.1f}-{max(each):.1f} tokens/s; rounds: "
              f"{', '.join(f'{t:.1f}' for t, _ in totals)})")
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    print()
    print(f"goal 1: single stream >= plain generate  {'met' if single >= plain else 'NOT met'}")
    print(f"goal 2: {args.clients} streams >= 3x one stream       {'met' if total >= 3 * single else 'NOT met'}")


if __name__ == "__main__":
    main()
