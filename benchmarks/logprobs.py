"""What ``logprobs`` and ``top_logprobs`` cost on tunery's own engines, and that they change
nothing of the answer.

SmolLM2-135M-Instruct answers one prompt greedily through each engine (fp32 PyTorch, the int8 fast
path) three ways: without log-probabilities, with ``logprobs`` and with ``top_logprobs=5``; the
answer's tokens per wall-clock second (what a client waits; CPU time would count onnxruntime's
threads spinning while Python scores a step), the three ways alternating over ``--rounds`` rounds
so that a change in the machine's speed falls on all of them; printed: each way's median rate and
the median of its per-round ratio to the plain request. Each answer must be the plain one's, word
for word.

    .venv/bin/python benchmarks/logprobs.py [--max-tokens 160] [--rounds 5] [--precision int8]

Uses the default model pulled into ``TUNERY_HOME`` (a temporary home when unset); the int8 copy is
built there on first use.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from constrained import PROMPT


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--precision", action="append", choices=("fp32", "int8"),
                    help="an engine to measure, repeatable (default: both)")
    args = ap.parse_args()
    os.environ.setdefault("TUNERY_HOME", tempfile.mkdtemp(prefix="tunery-bench-"))
    from tunery.chat import ChatMessage, GenerationParams, Role
    from tunery.models.pull import pull
    from tunery.serving.local import LocalChatModel

    pull("smollm2-135m-instruct")
    ask = [ChatMessage(Role.USER, PROMPT)]
    ways = {"plain": {}, "logprobs": {"logprobs": True}, "top_logprobs=5": {"logprobs": True, "top_logprobs": 5}}
    print("engine  way                   tokens/s   ratio  tokens  same answer")
    for precision in args.precision or ("fp32", "int8"):
        model = LocalChatModel("smollm2-135m-instruct", precision=precision)
        model.load()
        model.generate(ask, GenerationParams(max_tokens=4, temperature=0))  # warm
        plain_text = model.generate(ask, GenerationParams(max_tokens=args.max_tokens, temperature=0)).text
        rates: dict[str, list[float]] = {way: [] for way in ways}
        same: dict[str, bool] = {}
        for _ in range(args.rounds):
            for way, kw in ways.items():
                params = GenerationParams(max_tokens=args.max_tokens, temperature=0, **kw)
                t0 = time.perf_counter()
                done = model.generate(ask, params)
                tokens = done.usage.completion_tokens
                rates[way].append(tokens / (time.perf_counter() - t0))
                same[way] = same.get(way, True) and done.text == plain_text
        for way in ways:
            ratio = statistics.median(r / p for r, p in zip(rates[way], rates["plain"], strict=True))
            print(f"{precision:<8}{way:<18}{statistics.median(rates[way]):>12.1f}{ratio:>8.3f}"
                  f"{tokens:>8}  {same[way]}")


if __name__ == "__main__":
    main()
