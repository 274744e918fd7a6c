"""Which precision should the fast (ONNX) serving path use? Each candidate built from one Hugging Face
folder, then: build seconds, size, held-out loss against PyTorch float32, and decode speed.

Variants: ONNX fp32, int8 (8-bit blocks), int4 (GPTQ: 8-bit ``qkv_proj``, 4-bit o/gate/up/down),
and a mixed int4 (GPTQ with ``o_proj`` and ``down_proj`` at 8 bits too: only gate/up are 4-bit).
GPTQ calibrates on the bundled travel training chats, 8,192 tokens, as ``tunery export`` does; the
loss is on the assistant tokens (the trainer's loss positions) of the bundled travel validation
chats. Decode: one stream, greedy, --tokens tokens after a travel prompt through onnxruntime-genai
(loaded as the ONNX engine loads it), in rounds that interleave the variants (a slow minute on a
shared machine slows them all); the best and the median round are printed.

    python benchmarks/precision.py [--hf FOLDER] [--rounds 5] [--threads 2]

A timing, not a test: run it on a quiet machine. Exports go to --work (rebuilt on every run, so
that the build time is measured).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import time
from pathlib import Path

from export_matrix import PROMPT, OnnxRuntime, TorchRuntime, loss_of

MIXED = re.compile(r"(^|[/._])(qkv|q|k|v|o|down)_proj([/._]|$)")
"""The mixed variant's 8-bit matrices: the attention's input and output, the MLP's output."""


def travel_calibration(hf_dir: Path) -> list[list[int]]:
    """The token sequences ``tunery export --format onnx --quantize int4`` calibrates a base model on."""
    from tunery.compiled.cache import CALIBRATION_CHATS, calibration_ids
    from tunery.data.validate import load_examples
    from tunery.examples import TRAVEL_TRAIN

    chats = [c.to_dicts() for c in load_examples(str(TRAVEL_TRAIN), purpose="validation")][:CALIBRATION_CHATS]
    return calibration_ids(hf_dir, chats)


def build(hf_dir: Path, out: Path, quantize: str, calibration: list[list[int]] | None, eight_bit: re.Pattern | None
          ) -> float:
    """Build one variant into ``out``; returns the wall seconds of ``build_onnx``."""
    from tunery.compiled import gptq
    from tunery.compiled.onnx_build import build_onnx

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    default = gptq.EIGHT_BIT
    gptq.EIGHT_BIT = eight_bit or default
    try:
        t = time.perf_counter()
        build_onnx(hf_dir, out, quantize, calibration=calibration)
        return time.perf_counter() - t
    finally:
        gptq.EIGHT_BIT = default


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hf", type=Path, help="Hugging Face folder (default: the default model, pulled if needed)")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "tunery-precision")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for every runtime")
    ap.add_argument("--rounds", type=int, default=5, help="timed decode rounds, the variants interleaved")
    args = ap.parse_args()

    from transformers import AutoTokenizer

    from tunery.data.validate import load_examples
    from tunery.examples import TRAVEL_VALIDATION
    from tunery.models import ensure

    hf_dir = args.hf or ensure().path
    tok = AutoTokenizer.from_pretrained(str(hf_dir))
    convs = [c.to_dicts() for c in load_examples(str(TRAVEL_VALIDATION), purpose="validation")]
    calib = travel_calibration(hf_dir)
    print(f"{hf_dir}: calibration {len(calib)} chats, {sum(map(len, calib))} tokens; held-out "
          f"{len(convs)} chats; {args.threads} threads", flush=True)

    variants = {"ONNX fp32": ("none", None, None), "ONNX int8": ("int8", None, None),
                "ONNX int4 (GPTQ)": ("int4", calib, None),
                "ONNX int4 mixed (8-bit o/down)": ("int4", calib, MIXED)}
    built: dict[str, float] = {}
    for name, (quantize, calibration, eight_bit) in variants.items():
        built[name] = build(hf_dir, args.work / name.split(" (")[0].replace(" ", "-"), quantize, calibration,
                            eight_bit)
        print(f"  built {name} in {built[name]:.1f}s", flush=True)

    runtimes = {"PyTorch fp32": TorchRuntime(hf_dir, tok, args.threads)}
    for name in variants:
        runtimes[name] = OnnxRuntime(args.work / name.split(" (")[0].replace(" ", "-"), args.threads)
    ids = list(tok(tok.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True),
                   add_special_tokens=False)["input_ids"])
    for rt in runtimes.values():  # one-time kernel set-up, untimed
        rt.timed(ids, 4)
    rounds: dict[str, list[float]] = {name: [] for name in runtimes}
    for i in range(args.rounds):
        for name, rt in runtimes.items():
            rounds[name].append(rt.timed(ids, args.tokens)[1])
        print(f"  round {i + 1}/{args.rounds}: " + ", ".join(f"{n} {r[-1]:.0f}" for n, r in rounds.items()),
              flush=True)
    losses = {name: loss_of(rt, tok, convs) for name, rt in runtimes.items()}

    base = losses["PyTorch fp32"]
    print(f"\n{len(convs)} held-out chats; decode: {args.tokens} greedy tokens, one stream, tokens/s best / "
          f"median of {args.rounds} interleaved rounds\n")
    print("| precision | build s | size MiB | held-out loss | vs fp32 | decode tok/s best | median |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, rt in runtimes.items():
        b = f"{built[name]:.1f}" if name in built else ""
        print(f"| {name} | {b} | {rt.size / 2**20:.0f} | {losses[name]:.4f} | "
              f"{(losses[name] - base) / base:+.2%} | {max(rounds[name]):.1f} | {statistics.median(rounds[name]):.1f} |")


if __name__ == "__main__":
    main()
