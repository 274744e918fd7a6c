"""Training throughput: tunery's trainer against TRL's SFTTrainer + PEFT, same data, same settings.

Both fine-tune SmolLM2-135M-Instruct with LoRA (same rank, alpha, targets and layers: by default
the catalog's, the top ten layers, as a default job uses), the same batch size,
learning rate, schedule, epochs, sequence lengths and seed, in fp32, each in its own process (so
peak memory is its own). Both take the loss on assistant tokens only: TRL gets SmolLM2's chat
template with ``{% generation %}`` markers so ``assistant_only_loss`` masks exactly the tokens
tunery masks. Prints tokens/s, trained (assistant) tokens/s, the ratio, final training loss,
held-out validation loss (computed the same way for both) and peak memory.

    python benchmarks/train_throughput.py                 # the bundled data, the default job's settings
    python benchmarks/train_throughput.py --layers all --epochs 1 --batch-size 4   # LoRA on every layer
    python benchmarks/train_throughput.py --examples 24   # quicker

Needs ``pip install trl`` (a benchmark-only dependency). Don't read timings from a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src" / "tunery" / "examples" / "travel"
MODEL = "smollm2-135m-instruct"

GEN_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def load_rows(path: Path, n: int | None) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows[:n] if n else rows


def settings(args) -> dict:
    from tunery.models.catalog import CATALOG

    d = CATALOG[MODEL].training
    layers = None if args.layers == "all" else list(d.lora_layers or []) or None
    return {"r": d.lora_r, "alpha": d.lora_alpha, "dropout": d.lora_dropout, "targets": list(d.lora_target_modules),
            "layers": layers, "batch_size": args.batch_size, "lr": d.lora_learning_rate, "epochs": args.epochs,
            "seed": 42, "max_length": 2048, "warmup_ratio": 0.05}


def token_counts(tok, rows) -> tuple[int, int]:
    from tunery.chat import Conversation
    from tunery.chat_template import encode

    enc = [encode(Conversation.from_dicts(r["messages"]), tok, max_length=2048) for r in rows]
    return sum(len(e) for e in enc), sum(e.n_trained for e in enc)


def valid_loss(model, tok) -> float:
    """Held-out loss on the bundled validation file, the same code for both systems."""
    import torch

    from tunery.chat import Conversation
    from tunery.chat_template import encode
    from tunery.training.batching import collate
    from tunery.training.trainer import batch_loss

    rows = load_rows(DATA / "validation.jsonl", None)
    total = n = 0.0
    model.eval()
    with torch.no_grad():
        for r in rows:
            e = encode(Conversation.from_dicts(r["messages"]), tok, max_length=2048)
            loss, cnt, _ = batch_loss(model, collate([e], tok.pad_token_id))
            total += float(loss)
            n += cnt
    return total / n


def run_tunery(args, s) -> dict:
    from tunery.chat import Conversation
    from tunery.models import ensure
    from tunery.models.loading import load_tokenizer
    from tunery.training import Trainer, TrainingConfig, encode_all
    from tunery.training.config import LoraSettings

    rec = ensure(MODEL)
    tok = load_tokenizer(rec)
    rows = load_rows(DATA / "train.jsonl", args.examples)
    ex = encode_all([Conversation.from_dicts(r["messages"]) for r in rows], tok, max_length=s["max_length"])
    cfg = TrainingConfig(method="lora", n_epochs=s["epochs"], batch_size=s["batch_size"], learning_rate=s["lr"],
                         seed=s["seed"], max_seq_length=s["max_length"], warmup_ratio=s["warmup_ratio"],
                         lora=LoraSettings(s["r"], s["alpha"], s["dropout"], tuple(s["targets"]),
                                           tuple(s["layers"]) if s["layers"] else None),
                         checkpoint_every=0, epoch_checkpoints=False)
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(base_path=rec.path, tokenizer=tok, config=cfg, train=ex, valid=None, output_dir=Path(out))
        result = trainer.run(resume=False)  # result.seconds: the training loop (TRL's train() is timed alike)
    losses = [m["train_loss"] for m in result.metrics]
    return {"seconds": result.seconds, "losses": losses, "valid_loss": valid_loss(trainer.model, tok)}


def run_trl(args, s) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from tunery.models import ensure
    from tunery.models.loading import load_base_model, load_tokenizer

    rec = ensure(MODEL)
    tok = load_tokenizer(rec)
    tok.chat_template = GEN_TEMPLATE
    rows = load_rows(DATA / "train.jsonl", args.examples)
    ds = Dataset.from_list([{"messages": r["messages"]} for r in rows])
    model = load_base_model(rec.path, dtype=torch.float32)
    steps = -(-len(rows) // s["batch_size"]) * s["epochs"]
    cfg = SFTConfig(output_dir=args.tmp, per_device_train_batch_size=s["batch_size"], gradient_accumulation_steps=1,
                    learning_rate=s["lr"], num_train_epochs=s["epochs"], lr_scheduler_type="linear",
                    warmup_steps=max(1, int(steps * s["warmup_ratio"])), weight_decay=0.0, max_grad_norm=1.0, seed=s["seed"],
                    max_length=s["max_length"], assistant_only_loss=True, logging_steps=1, save_strategy="no",
                    report_to=[], use_cpu=True, bf16=False, fp16=False, dataloader_num_workers=0,
                    disable_tqdm=True, packing=False)
    lcfg = LoraConfig(r=s["r"], lora_alpha=s["alpha"], lora_dropout=s["dropout"], target_modules=s["targets"],
                      layers_to_transform=s["layers"], bias="none", task_type="CAUSAL_LM")
    losses: list[float] = []

    class Log(TrainerCallback):
        def on_log(self, a, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    trainer = SFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok, peft_config=lcfg,
                         callbacks=[Log()])
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "losses": losses, "valid_loss": valid_loss(trainer.model, tok)}


def child(args) -> None:
    s = settings(args)
    out = run_tunery(args, s) if args.system == "tunery" else run_trl(args, s)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=None, help="use the first N training examples (default all)")
    ap.add_argument("--epochs", type=int, default=2, help="default 2, what auto picks for the bundled data")
    ap.add_argument("--batch-size", type=int, default=8, help="default 8, what auto picks for the bundled data")
    ap.add_argument("--layers", choices=["default", "all"], default="default",
                    help="LoRA on the catalog's default layers (SmolLM2: the top ten) or on every layer; "
                         "both systems get the same")
    ap.add_argument("--system", choices=["tunery", "trl"], help=argparse.SUPPRESS)
    ap.add_argument("--tmp", default="/tmp/tunery-bench-trl", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.system:
        return child(args)

    from tunery.models import ensure
    from tunery.models.loading import load_tokenizer

    tok = load_tokenizer(ensure(MODEL))
    tokens, trained = token_counts(tok, load_rows(DATA / "train.jsonl", args.examples))
    tokens, trained = tokens * args.epochs, trained * args.epochs
    results = {}
    for system in ("tunery", "trl"):
        cmd = [sys.executable, __file__, "--system", system, "--epochs", str(args.epochs),
               "--batch-size", str(args.batch_size), "--layers", args.layers] + (["--examples", str(args.examples)] if args.examples else [])
        print(f"running {system} ...", flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            print(proc.stdout[-3000:], proc.stderr[-3000:])
            raise SystemExit(f"{system} run failed")
        results[system] = json.loads(line[7:])

    s = settings(args)
    where = "every layer" if not s["layers"] else f"layers {s['layers'][0]}-{s['layers'][-1]}"
    print(f"\nSmolLM2-135M-Instruct, LoRA r={s['r']} on all linear modules of {where}, lr {s['lr']:g}, "
          f"batch {args.batch_size}, {args.epochs} epoch(s), "
          f"fp32, {os.cpu_count()} threads; {tokens} tokens of which {trained} trained (assistant)")
    print(f"{'system':<8} {'seconds':>8} {'tokens/s':>9} {'trained tok/s':>14} {'final loss':>11} "
          f"{'valid loss':>11} {'peak RSS MB':>12}")
    for name, r in results.items():
        final = sum(r["losses"][-5:]) / len(r["losses"][-5:])
        print(f"{name:<8} {r['seconds']:>8.1f} {tokens / r['seconds']:>9.1f} {trained / r['seconds']:>14.1f} "
              f"{final:>11.4f} {r['valid_loss']:>11.4f} {r['peak_rss_mb']:>12.0f}")
    ratio = results["trl"]["seconds"] / results["tunery"]["seconds"]
    print(f"\nspeed-up (tunery vs TRL, same tokens): {ratio:.2f}x")


if __name__ == "__main__":
    main()
