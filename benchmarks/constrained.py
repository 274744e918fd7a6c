"""What constrained decoding costs on this CPU, and whether what it returns validates.

Part 1 (the library choice): SmolLM2-135M-Instruct decodes greedily in a plain loop (one forward
pass per token, KV cache), unconstrained and with each library's mask for the same JSON schema
computed and applied every step; tokens/s and the ratio. Same prompt, same number of steps.

Part 2 (goal 2, through tunery's own engines, fp32 PyTorch and the int8 fast path): decode
tokens/s of a ``json_schema`` request against the same request unconstrained; then tool calls
(``tool_choice`` auto, required and named) and ``json_schema`` answers over a set of prompts,
every returned call and document checked against its schema.

    .venv/bin/python benchmarks/constrained.py [--model PATH] [--steps 64] [--runs 2] [--skip-library]

Needs the ``[bench]`` extra (the grammar libraries compared). Without ``--model`` it pulls the
default model into ``TUNERY_HOME`` (a temporary home when unset) and uses that.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

SCHEMA = {"type": "object", "properties": {
    "destination": {"type": "string"}, "nights": {"type": "integer"},
    "highlights": {"type": "array", "items": {"type": "string"}},
    "budget_eur": {"type": "number"}, "visa_needed": {"type": "boolean"}},
    "required": ["destination", "nights", "highlights", "budget_eur", "visa_needed"], "additionalProperties": False}
PROMPT = "Plan a trip to Lisbon as JSON with destination, nights, highlights, budget_eur and visa_needed."
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather forecast for a city.",
                                      "parameters": {"type": "object", "properties": {
                                          "city": {"type": "string"}, "days": {"type": "integer", "minimum": 1,
                                                                               "maximum": 14}},
                                          "required": ["city", "days"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "convert_currency", "description": "Convert an amount.",
                                      "parameters": {"type": "object", "properties": {
                                          "amount": {"type": "number"},
                                          "from": {"type": "string", "enum": ["EUR", "USD", "JPY", "GBP"]},
                                          "to": {"type": "string", "enum": ["EUR", "USD", "JPY", "GBP"]}},
                                          "required": ["amount", "from", "to"], "additionalProperties": False}}},
]
ASKS = ["What's the weather in Kyoto for the next 3 days?", "Convert 250 euros to yen.",
        "Will it rain in Oslo tomorrow?", "How many dollars is 80 pounds?", "Forecast for Lima this week please.",
        "I have 1000 USD, how much is that in EUR?", "Weather in Cairo for 5 days?", "Change 45 GBP to USD."]


def _decode_loop(model, ids, steps, mask_fn=None, accept_fn=None):
    """Greedy decoding; per step, the CPU seconds (all threads of this process) of the forward pass
    and of the constraint (mask, then accepting the token). CPU time, not wall time: on a shared,
    busy machine wall time measures the neighbours."""
    import torch
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    x = torch.tensor([ids])
    forward, constraint = [], []
    with torch.inference_mode():
        for _ in range(steps):
            t0 = time.process_time()
            logits = model(input_ids=x, cache=cache, use_cache=True).logits[0, -1]
            t1 = time.process_time()
            if mask_fn is not None and not mask_fn(logits):
                break
            tok = int(logits.argmax())
            if accept_fn is not None:
                accept_fn(tok)
            t2 = time.process_time()
            forward.append(t1 - t0)
            constraint.append(t2 - t1)
            x = torch.tensor([[tok]])
    return forward[1:], constraint[1:]  # the first step is the prefill


def library_table(model_dir: Path, steps: int, runs: int) -> None:
    """Median per-token CPU costs; the ratio is the tokens/s left with the constraint when the
    CPU is the bottleneck (forward / (forward + constraint))."""
    import statistics

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    text = tok.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True, tokenize=False)
    ids = tok.encode(text, add_special_tokens=False)
    vocab = model.config.vocab_size

    import xgrammar as xgr

    from tunery.serving.constrained import Guide, _json

    info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=vocab)
    compiled = xgr.GrammarCompiler(info).compile_json_schema(json.dumps(SCHEMA), any_whitespace=False,
                                                             separators=(", ", ": "))
    bitmask = xgr.allocate_token_bitmask(1, info.vocab_size)

    def llguidance_run():
        # as the engines use it (tunery.serving.constrained.Guide)
        guide = Guide(f"start: doc\ndoc: {_json(SCHEMA, True)}", tok, [tok.eos_token_id])

        def mask(logits):
            if guide.stopped:
                return False
            guide.apply(logits.numpy())
            return True
        return mask, guide.consume

    def xgrammar_run():
        m = xgr.GrammarMatcher(compiled)

        def mask(logits):
            if m.is_terminated():
                return False
            m.fill_next_token_bitmask(bitmask)
            xgr.apply_token_bitmask_inplace(logits[None], bitmask)
            return True
        return mask, m.accept_token

    ms = 1000
    print(f"\n## Library: SmolLM2-135M fp32, greedy, plain loop, one JSON schema, {os.cpu_count()} CPU cores, "
          f"torch {torch.get_num_threads()} threads; CPU ms per token, medians over {runs} runs")
    print(f"{'constraint':<20}{'tokens':>7}{'forward ms':>12}{'mask ms':>9}{'tok/s ratio':>13}")
    for name, make in (("none", None), ("llguidance " + version("llguidance"), llguidance_run),
                       ("xgrammar " + version("xgrammar"), xgrammar_run)):
        fwd, con = [], []
        for _ in range(runs):
            f, c = _decode_loop(model, ids, steps, *(make() if make else ()))
            fwd += f
            con += c
        f, c = statistics.median(fwd), statistics.median(con)
        print(f"{name:<20}{len(fwd) // runs:>7}{f * ms:>12.2f}{c * ms:>9.3f}{f / (f + c):>13.3f}")


def _tokens_per_s(model, messages, params, runs=3):
    """Decode tokens per CPU second (all threads of this process, the engine's included): the
    answer's CPU time less that of a 1-token answer (the prefill), the least of ``runs``."""
    from dataclasses import replace

    best_full, best_one, tokens = float("inf"), float("inf"), 0
    for _ in range(runs):
        t0 = time.process_time()
        run = model.start(messages, params)
        run.collect()
        best_full = min(best_full, time.process_time() - t0)
        tokens = run.completion_tokens
        t0 = time.process_time()
        model.start(messages, replace(params, max_tokens=1)).collect()
        best_one = min(best_one, time.process_time() - t0)
    return (tokens - 1) / max(1e-9, best_full - best_one), tokens


def engines_table(model_dir: Path, speed: bool = True, register_folder: bool = True) -> None:
    import jsonschema

    from tunery.chat import ChatMessage, GenerationParams, Role
    from tunery.chat_template import parse_tool_calls
    from tunery.models import ModelRecord, register
    from tunery.serving.local import LocalChatModel

    if register_folder:
        register(ModelRecord(id="smollm2-135m-instruct", kind="base", path=model_dir, source="folder",
                             meta={"catalog": "smollm2-135m-instruct", "context_length": 8192}), replace=True)
    fmt = {"type": "json_schema", "json_schema": {"name": "trip", "schema": SCHEMA, "strict": True}}
    ask = [ChatMessage(Role.USER, PROMPT)]
    print("\n## Engines: decode tokens per CPU second, json_schema vs unconstrained (same prompt, greedy, "
          "as many tokens, best of 3)")
    print(f"{'engine':<8}{'free tok/s':>12}{'constr. tok/s':>15}{'ratio':>8}{'tokens':>8}")
    for precision in ("fp32", "int8") if speed else ():
        model = LocalChatModel("smollm2-135m-instruct", precision=precision)
        model.load()
        model.generate(ask, GenerationParams(max_tokens=4, temperature=0))  # warm
        c_rate, n = _tokens_per_s(model, ask, GenerationParams(max_tokens=160, temperature=0, response_format=fmt))
        f_rate, _ = _tokens_per_s(model, ask, GenerationParams(max_tokens=n, temperature=0))
        print(f"{precision:<8}{f_rate:>12.1f}{c_rate:>15.1f}{c_rate / f_rate:>8.3f}{n:>8}")

    print("\n## Validity: every returned tool call and json_schema answer checked against its schema")
    print(f"{'engine':<8}{'request':<22}{'answers':>8}{'stop':>6}{'calls':>7}{'valid':>7}")
    specs = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    for precision in ("fp32", "int8"):
        model = LocalChatModel("smollm2-135m-instruct", precision=precision)
        cases = [("auto", {"tools": tuple(TOOLS)}), ("required", {"tools": tuple(TOOLS), "tool_choice": "required"}),
                 ("named", {"tools": tuple(TOOLS), "tool_choice": {"type": "function",
                                                                  "function": {"name": "get_weather"}}}),
                 ("json_schema", {"response_format": fmt})]
        for label, kw in cases:
            answers = stops = calls = valid = 0
            # all prompts started before any is read: the engine batches them
            runs = [model.start([ChatMessage(Role.USER, q)],
                                GenerationParams(max_tokens=160, temperature=0.7, seed=i, n=2, **kw))
                    for i, q in enumerate(ASKS)]
            for run in runs:
                done = run.collect()
                for text, reason in zip(done.choices, run.finish_reasons, strict=True):
                    answers += 1
                    stops += reason == "stop"
                    if label == "json_schema":
                        calls += reason == "stop"
                        try:
                            jsonschema.validate(json.loads(text), SCHEMA)
                            valid += 1
                        except (ValueError, jsonschema.ValidationError):
                            pass
                        continue
                    for call in parse_tool_calls(text)[1]:
                        calls += 1
                        fn = call["function"]
                        try:
                            jsonschema.validate(json.loads(fn["arguments"]), specs[fn["name"]])
                            valid += 1
                        except (KeyError, ValueError, jsonschema.ValidationError):
                            pass
            print(f"{precision:<8}{label:<22}{answers:>8}{stops:>6}{calls:>7}{valid:>7}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None,
                    help="a SmolLM2-135M-Instruct folder (default: pulled into TUNERY_HOME)")
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--skip-library", action="store_true")
    ap.add_argument("--skip-engines", action="store_true")
    ap.add_argument("--skip-speed", action="store_true", help="of the engines, only check validity")
    args = ap.parse_args()
    os.environ.setdefault("TUNERY_HOME", tempfile.mkdtemp(prefix="tunery-bench-"))
    pulled = args.model is None
    if pulled:
        from tunery.models.pull import pull

        args.model = pull("smollm2-135m-instruct").path
    if not args.skip_library:
        library_table(args.model, args.steps, args.runs)
    if not args.skip_engines:
        engines_table(args.model, speed=not args.skip_speed, register_folder=not pulled)


if __name__ == "__main__":
    main()
