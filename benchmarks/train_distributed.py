"""Data-parallel training on one CPU: 2 processes x 1 thread (torchrun, gloo) against 1 process x 2
threads, the same LoRA job on SmolLM2-135M-Instruct (the catalog's settings: adapters on the top
layers, so the frozen-layer path) over the bundled travel data, a few steps.

Both runs see the same batches (``training.distributed``), so their losses agree; what differs is
how the cores are used: two processes each run half of every batch on one thread and sum their
gradients once a step, one process runs the whole batch on two threads. Prints the seconds and
tokens/s of each, the ratio, and the last loss of each; and, for scale, one process on one rank's
share of the threads.

    python benchmarks/train_distributed.py                   # 32 examples, batch 8: 4 steps
    python benchmarks/train_distributed.py --examples 64 --threads 4

Each run is its own process tree, one after the other. Don't read timings from a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src" / "tunery" / "examples" / "travel" / "train.jsonl"
MODEL = "smollm2-135m-instruct"


def child(args) -> None:
    """One run (one rank of it under torchrun); rank 0 prints the result as JSON."""
    from transformers import AutoTokenizer

    from tunery.chat import Conversation
    from tunery.models import ensure
    from tunery.models.catalog import CATALOG
    from tunery.models.loading import base_path
    from tunery.training import Trainer, TrainingConfig, encode_all
    from tunery.training.config import LoraSettings

    model_dir = Path(args.model_dir) if args.model_dir else base_path(ensure(MODEL))
    tok = AutoTokenizer.from_pretrained(model_dir)
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()][:args.examples]
    ex = encode_all([Conversation.from_dicts(r["messages"]) for r in rows], tok, max_length=2048)
    d = CATALOG[MODEL].training
    cfg = TrainingConfig(method="lora", n_epochs=1, batch_size=args.batch_size, learning_rate=d.lora_learning_rate,
                         seed=42, max_seq_length=2048, lora=LoraSettings.from_defaults(d), epoch_checkpoints=False)
    with tempfile.TemporaryDirectory() as out:
        res = Trainer(base_path=model_dir, tokenizer=tok, config=cfg, train=ex, valid=None,
                      output_dir=Path(out)).run(resume=False)
    if os.environ.get("RANK", "0") == "0":
        print("RESULT " + json.dumps({"seconds": res.seconds, "tokens_per_second": res.tokens_per_second,
                                      "steps": res.steps, "losses": [r["train_loss"] for r in res.metrics]}))


def timed(nproc: int, args, threads: int) -> dict:
    """A run of ``nproc`` processes sharing ``threads`` threads, in a fresh process tree."""
    me = [__file__, "--child", "--examples", str(args.examples), "--batch-size", str(args.batch_size),
          *(["--model-dir", args.model_dir] if args.model_dir else [])]
    cmd = ([sys.executable, *me] if nproc == 1 else
           [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), *me])
    env = {**os.environ, "TUNERY_NUM_THREADS": str(threads), "GLOO_SOCKET_IFNAME": "lo"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        sys.exit(f"{nproc}-process run failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2, help="threads in all, shared by the processes")
    ap.add_argument("--model-dir", default=None, help="a SmolLM2 folder (default: pulled into TUNERY_HOME, offline)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    one = timed(1, args, args.threads)
    two = timed(2, args, args.threads)
    single = timed(1, args, max(1, args.threads // 2))  # the share of one rank: what splitting gains
    for name, r in ((f"1 process x {args.threads} threads", one),
                    (f"2 processes x {max(1, args.threads // 2)} thread(s)", two),
                    (f"1 process x {max(1, args.threads // 2)} thread(s)", single)):
        print(f"{name:28s} {r['seconds']:7.1f} s  {r['tokens_per_second']:7.1f} tokens/s  "
              f"{r['steps']} steps, last loss {r['losses'][-1]:.4f}")
    print(f"ratio (2 processes / 1 process, tokens/s): {two['tokens_per_second'] / one['tokens_per_second']:.2f}")


if __name__ == "__main__":
    main()
