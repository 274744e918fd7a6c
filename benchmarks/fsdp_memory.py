"""Memory of a sharded full fine-tune: the same full fine-tune of SmolLM2-135M-Instruct in 2
processes (torchrun, gloo on CPU), with every rank holding the whole model (``--sharding ddp``)
and with FSDP2 (``--sharding fsdp``). Prints, per rank, the parameter elements it holds, its
resident memory after each optimizer step (the largest: weights, gradients and AdamW state as
training holds them, and the Python runtime), its peak resident memory over the whole run
(``ru_maxrss``, which also counts loading the base weights and gathering them to save), and the
last loss of each run (they agree: the same batches).

    python benchmarks/fsdp_memory.py --model-dir PATH/smollm2-135m-instruct

Memory, not time: timings from a shared machine mean little, and sharding on CPU trades time for
memory (every layer's weights are gathered at every pass)."""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src" / "tunery" / "examples" / "travel" / "train.jsonl"
MODEL = "smollm2-135m-instruct"


def child(args) -> None:
    """One rank of a run; each prints its figures as JSON."""
    import torch.distributed as dist
    from transformers import AutoTokenizer

    from tunery.chat import Conversation
    from tunery.models import ensure
    from tunery.models.loading import base_path
    from tunery.training import Trainer, TrainingConfig, distributed, encode_all

    model_dir = Path(args.model_dir) if args.model_dir else base_path(ensure(MODEL))
    tok = AutoTokenizer.from_pretrained(model_dir)
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()][:args.examples]
    ex = encode_all([Conversation.from_dicts(r["messages"]) for r in rows], tok, max_length=1024)
    cfg = TrainingConfig(method="full", n_epochs=1, batch_size=args.batch_size, learning_rate=1e-5, seed=42,
                         max_seq_length=1024, epoch_checkpoints=False, sharding=args.sharding)
    held = {}
    shard_model = distributed.shard_model

    def measured(model, device):
        shard_model(model, device)
        held["elements"] = sum(p.to_local().numel() for p in model.parameters())

    def rss_gib() -> float:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30

    step = Trainer._train_step

    def stepped(self, *a, **kw):
        row = step(self, *a, **kw)
        held["step_gib"] = max(held.get("step_gib", 0.0), rss_gib())
        return row

    distributed.shard_model, Trainer._train_step = measured, stepped
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(base_path=model_dir, tokenizer=tok, config=cfg, train=ex, valid=None, output_dir=Path(out))
        res = trainer.run(resume=False)
        if "elements" not in held:
            held["elements"] = sum(p.numel() for p in trainer.model.parameters())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux -> GiB
    line = json.dumps({"rank": int(os.environ.get("RANK", 0)), "elements": held["elements"], "peak_gib": peak, "step_gib": held["step_gib"],
                       "losses": [r["train_loss"] for r in res.metrics]})
    for r in range(dist.get_world_size()):  # one rank at a time, so the lines do not interleave
        if r == dist.get_rank():
            print("RESULT " + line, flush=True)
        dist.barrier()


def run(sharding: str, args) -> list[dict]:
    me = [__file__, "--child", "--sharding", sharding, "--examples", str(args.examples),
          "--batch-size", str(args.batch_size), *(["--model-dir", args.model_dir] if args.model_dir else [])]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *me]
    env = {**os.environ, "TUNERY_NUM_THREADS": "2", "GLOO_SOCKET_IFNAME": "lo", "TUNERY_TRAIN_PRECISION": "fp32"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    out = [json.loads(ln[len("RESULT "):]) for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or len(out) != 2:
        sys.exit(f"{sharding} run failed:\n{proc.stderr[-3000:]}")
    return sorted(out, key=lambda r: r["rank"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--model-dir", default=None, help="a SmolLM2 folder (default: pulled into TUNERY_HOME, offline)")
    ap.add_argument("--sharding", default="ddp", help=argparse.SUPPRESS)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    for sharding in ("ddp", "fsdp"):
        ranks = run(sharding, args)
        for r in ranks:
            print(f"{sharding:4s} rank {r['rank']}: {r['elements'] / 1e6:6.1f} M parameter elements held, "
                  f"RSS after a step {r['step_gib']:.2f} GiB, peak RSS {r['peak_gib']:.2f} GiB, last loss {r['losses'][-1]:.4f}")


if __name__ == "__main__":
    main()
