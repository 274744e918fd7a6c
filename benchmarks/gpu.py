"""The CUDA paths on a GPU: each kind of fine-tuning job, and the PyTorch serving engine against
the same engine on the CPU and against plain ``transformers`` ``generate`` on the GPU.

Jobs (through the job queue, default settings unless named, seed 42): a supervised LoRA job on
the bundled travel data; one on the bundled tool data (adapters on every layer, as a job on tool
data gets by default); a full fine-tune of one epoch on the travel data; one DPO epoch on the
bundled preference pairs from the first job's model. Each prints its wall time, the training
loop's tokens/s (the job's last event) and the precision the job chose (its first events).

Serving: ``--tokens`` tokens (end-of-turn ignored) for one stream and for ``--streams`` streams
at once, on the engine on the GPU and on the CPU, and ``generate`` on the GPU for one stream.

    TUNERY_HOME=/tmp/gpu-home python benchmarks/gpu.py

A machine whose SmolLM2 cannot be pulled (a lent GPU machine that reaches no package registry)
takes ``--random-weights FOLDER``: a folder with SmolLM2's config and tokenizer files (the pulled
model's, without ``model.safetensors``). The model is then built with random weights of the same
shapes and registered as ``smollm2-135m-random`` (with SmolLM2's catalog defaults), which the jobs
and engines then use: the speeds are the real model's, the losses and answers are noise. A pulled
SmolLM2 in the same home is left alone. Don't read timings from a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import time
from pathlib import Path

import torch

from tunery.examples import ROOT

MODEL = "smollm2-135m-instruct"
RANDOM = "smollm2-135m-random"
TRAVEL, TOOLS = ROOT / "travel", ROOT / "travel_tools"


def random_weights(folder: Path) -> str:
    """Register SmolLM2-shaped random weights as their own model (see the module's docstring) and
    return its id. Its folder is this script's: one it did not make is never replaced."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from tunery.home import home
    from tunery.models import ModelRecord, register

    out = home().root / "models" / RANDOM
    mark = out / ".tunery-random-weights"
    if out.exists() and not mark.exists():
        raise SystemExit(f"{out} exists and was not made by this script: move it, or use another TUNERY_HOME")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    mark.touch()  # the script's from now on: a run that fails below may be run again
    for f in folder.iterdir():  # its config and tokenizer files; no weights, no folders
        if f.is_file() and f.suffix not in (".safetensors", ".bin", ".gguf"):
            shutil.copy2(f, out / f.name)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(out)).save_pretrained(out)
    register(ModelRecord(id=RANDOM, kind="base", path=out, source="pypi-gguf",
                         meta={"catalog": MODEL, "context_length": 8192}), replace=True)
    return RANDOM


def run_job(name: str, **request) -> dict:
    from tunery.jobs import Worker, create_job, get_job, list_events

    job = create_job(seed=42, suffix=name, **request)
    t0 = time.perf_counter()
    worker = Worker(poll_interval=0.2).start()
    seen: set[str] = set()
    try:
        while (job := get_job(job["id"]))["status"] not in ("succeeded", "failed", "cancelled"):
            time.sleep(0.5)
            for e in reversed(list_events(job["id"], limit=20)[0]):  # as they come: where the time goes
                if e["id"] not in seen:
                    seen.add(e["id"])
                    print(f"  {name} {time.perf_counter() - t0:6.1f}s {e['message']}", flush=True)
    finally:
        worker.stop()
    seconds = time.perf_counter() - t0
    events, _ = list_events(job["id"], limit=100)
    data = [e.get("data") or {} for e in events]
    rate = next((d["tokens_per_second"] for d in data if "tokens_per_second" in d and "seconds" in d), None)
    said = [e["message"] for e in reversed(events)]
    precision = next((m for m in said if m.startswith("Training in")), "?")
    return {"job": name, "status": job["status"], "error": job.get("error"), "model": job.get("fine_tuned_model"),
            "seconds": round(seconds, 1), "tokens_per_second": rate, "trained_tokens": job.get("trained_tokens"),
            "precision": precision, "hyperparameters": job.get("hyperparameters")}


def jobs() -> list[dict]:
    from tunery.data import files

    up = {n: files.create_from_path(p, "fine-tune").id for n, p in
          {"train": TRAVEL / "train.jsonl", "valid": TRAVEL / "validation.jsonl", "tools": TOOLS / "train.jsonl",
           "tools_valid": TOOLS / "validation.jsonl", "pairs": TRAVEL / "preferences.jsonl"}.items()}
    out = [run_job("sft", model=MODEL, training_file=up["train"], validation_file=up["valid"])]
    out.append(run_job("tools", model=MODEL, training_file=up["tools"], validation_file=up["tools_valid"]))
    out.append(run_job("full", model=MODEL, training_file=up["train"], training_method="full",
                       hyperparameters={"n_epochs": 1}))
    if out[0]["model"]:
        out.append(run_job("dpo", model=out[0]["model"], training_file=up["pairs"],
                           method={"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 1}}}))
    return out


def engine_speed(device: str, streams: int, tokens: int) -> float:
    """Generated tokens per second of the PyTorch engine on ``device``, ``streams`` at once."""
    from tunery.chat import ChatMessage, Role
    from tunery.chat_template import prompt_ids
    from tunery.models import ensure
    from tunery.models.loading import load_tokenizer, stop_token_ids
    from tunery.serving.engine import EngineRequest
    from tunery.serving.torch_engine import TorchEngine

    rec = ensure(MODEL)
    tok = load_tokenizer(rec)
    eng = TorchEngine(rec.path, tok, stop_token_ids(tok, rec.path), device=device, max_batch=max(16, streams))
    ids = prompt_ids(tok, [ChatMessage(Role.USER, "Plan three days in Lisbon.")])
    try:
        for n in (1, streams):  # the first round warms up (CUDA kernels, allocator)
            q: queue.Queue = queue.Queue()
            t0 = time.perf_counter()
            for i in range(n):
                eng.submit(EngineRequest(prompt_ids=ids, emit=q.put, index=i, max_tokens=tokens, temperature=0.0,
                                         ignore_eos=True))
            done = 0
            while done < n:
                delta = q.get(timeout=300)
                if delta.error is not None:
                    raise SystemExit(f"the engine on {device} failed: {delta.error}")
                done += bool(delta.final)
            seconds = time.perf_counter() - t0
        return streams * tokens / seconds
    finally:
        eng.close()


def generate_speed(tokens: int) -> float:
    from tunery.models import ensure
    from tunery.models.loading import load_base_model, load_tokenizer

    rec = ensure(MODEL)
    tok = load_tokenizer(rec)
    model = load_base_model(rec.path).to("cuda")
    ids = tok.apply_chat_template([{"role": "user", "content": "Plan three days in Lisbon."}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    ids = ids.to("cuda")
    for _ in range(2):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.generate(ids, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                       pad_token_id=tok.eos_token_id)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    return tokens / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--random-weights", type=Path, help="SmolLM2's config and tokenizer folder (see above)")
    ap.add_argument("--sections", default="jobs,serve", help="jobs, serve, or both (default)")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--streams", type=int, default=16)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here: this benchmark measures the GPU paths")
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {os.cpu_count()} CPUs", flush=True)
    if args.random_weights:
        global MODEL
        MODEL = random_weights(args.random_weights)
        print("SmolLM2-shaped random weights: speeds are the model's, losses and answers are noise", flush=True)
    sections = set(args.sections.split(","))
    if "jobs" in sections:
        for r in jobs():
            print(json.dumps(r), flush=True)
    if "serve" in sections:
        for device in ("cuda", "cpu"):
            for n in (1, args.streams):
                print(f"engine on {device}, {n} stream(s): {engine_speed(device, n, args.tokens):.1f} tokens/s",
                      flush=True)
        print(f"transformers generate on cuda, 1 stream: {generate_speed(args.tokens):.1f} tokens/s", flush=True)


if __name__ == "__main__":
    main()
