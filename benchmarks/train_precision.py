"""Training precision on this machine: float32 against bfloat16 autocast, measured, in one run.

Two measurements, printed side by side:

1. the probe ``tunery.training.precision`` times at first use (a transformer-shaped block,
   forward and backward), which is what ``precision: auto`` decides by;
2. real LoRA training of SmolLM2-135M-Instruct on the bundled travel data, a few optimizer steps
   each way (same data, settings and seed), with the held-out loss of both.

    python benchmarks/train_precision.py               # 16 examples, 2 steps of 8 each way
    python benchmarks/train_precision.py --examples 32

On CPUs without AVX-512 BF16 or AMX, bfloat16 is emulated and far slower; where it is native it is
about twice as fast. Don't read timings from a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src" / "tunery" / "examples" / "travel"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    os.environ.setdefault("TUNERY_HOME", tempfile.mkdtemp(prefix="tunery-bench-"))

    from tunery.chat import Conversation
    from tunery.models.pull import ensure
    from tunery.training import TrainingConfig, finetune
    from tunery.training.config import LoraSettings
    from tunery.training.precision import describe, machine_signature, measure

    probe = measure()
    print(f"machine: {machine_signature()}")
    print(f"probe block: fp32 {probe.fp32_s * 1e3:.1f} ms/step, bf16 {probe.bf16_s * 1e3:.1f} ms/step, "
          f"bf16 speed = {probe.speedup:.2f}x fp32")

    rows = [json.loads(x) for x in (DATA / "train.jsonl").read_text().splitlines() if x.strip()]
    train = [Conversation.from_dicts(r["messages"]) for r in rows[: args.examples]]
    valid = [Conversation.from_dicts(json.loads(x)["messages"])
             for x in (DATA / "validation.jsonl").read_text().splitlines() if x.strip()][:8]
    base = ensure("smollm2-135m-instruct")
    d = base.spec.training
    config = TrainingConfig(method="lora", n_epochs=1, batch_size=args.batch_size, learning_rate=d.lora_learning_rate,
                            seed=42, max_seq_length=2048, epoch_checkpoints=False, eval_every=10_000,
                            lora=LoraSettings(r=d.lora_r, alpha=d.lora_alpha, layers=d.lora_layers))
    results = {}
    for precision in ("fp32", "bf16"):
        start = time.perf_counter()
        res = finetune(base, replace(config, precision=precision), train, valid,
                       Path(tempfile.mkdtemp(prefix=f"prec-{precision}-")))
        seconds = time.perf_counter() - start
        last = res.metrics[-1]
        results[precision] = (seconds, last.get("full_valid_loss", last.get("valid_loss")), last["train_loss"])
        print(f"{precision}: {seconds:.1f} s for {len(res.metrics)} steps, train loss {last['train_loss']:.4f}, "
              f"held-out loss {results[precision][1]}")
    (f32, v32, _), (b16, v16, _) = results["fp32"], results["bf16"]
    print(f"real training: bf16 speed = {f32 / b16:.2f}x fp32; held-out loss bf16 vs fp32: "
          f"{(v16 - v32) / v32:+.2%}" if v32 and v16 else f"real training: bf16 speed = {f32 / b16:.2f}x fp32")
    print(json.dumps({"probe": describe(probe), "training_s": {k: v[0] for k, v in results.items()}}))


if __name__ == "__main__":
    main()
