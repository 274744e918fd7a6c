"""Preference fine-tuning (DPO, issue 18): does supervised-then-DPO beat supervised alone on the
travel task, and how fast is tunery's DPO against TRL's DPOTrainer + PEFT?

``quality``: the quickstart's supervised fine-tune of SmolLM2-135M-Instruct (default settings,
seed 42; reused when this home already holds it), then a DPO job from it on the bundled
preference pairs (``examples/travel/preferences.jsonl``, held out: ``preferences-validation.jsonl``),
both run as jobs through the job system. With ``--onpolicy`` the DPO job trains instead on pairs of
the supervised model's own answers to its training prompts, judged by the quickstart's checks
(``tunery eval pairs``, see ``tunery.evals.onpolicy``; since 2026-12-03 these include ``declines``
on the questions to decline, so a preferred decline says no: the pairs of RESULTS' runs I, J and
of every mix before "Pairs whose preferred decline says no" were made without it). Then,
supervised vs supervised+DPO on the held-out questions with the quickstart's checks (greedy, the
travel system message): no specific recommendation and says no in words on ``decline``
questions, over-refusal on ``answer`` questions, ends with a
question, style similarity; the loss on the supervised validation file's answers (style loss);
and the held-out preference accuracy (implicit reward of chosen > rejected, recomputed here from
the registered model against the supervised one).

``throughput``: tunery's DPO trainer and TRL's ``DPOTrainer`` with PEFT, each in its own process,
on the same pairs from SmolLM2-135M-Instruct: same LoRA (the catalog's: r, alpha, targets, top ten
layers), batch size, learning rate, schedule, epochs, beta, sequence lengths, seed, fp32. TRL runs
with its defaults otherwise (its reference log-probs computed each step with the adapters off).

    TUNERY_HOME=/tmp/bench-home python benchmarks/dpo.py quality [--precision fp32 --precision int8]
        [--supervised-adapter OTHER_HOME/models/ft_smollm2-135m-instruct_travel_ID]
    TUNERY_HOME=/tmp/bench-home python benchmarks/dpo.py quality --onpolicy --precision int8
    TUNERY_HOME=/tmp/bench-home python benchmarks/dpo.py quality --onpolicy --mix-bundled 1 --precision int8 \
        [--rounds 2] [--answer-pairs 2] [--epochs 1] [--questions-file benchmarks/data/dpo-check-questions.jsonl]
    python benchmarks/dpo.py throughput [--epochs 1] [--pairs 16]

Needs ``pip install "trl>=0.20" datasets`` for ``throughput`` (the bench extra). Don't read
timings from a busy machine.
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
PREFS, PREFS_VALID = DATA / "preferences.jsonl", DATA / "preferences-validation.jsonl"
MODEL = "smollm2-135m-instruct"
SHOWN = 5  # answers printed side by side: the exercise's five questions


def _drive(job_id: str) -> dict:
    from tunery.jobs import Worker, get_job, store

    worker = Worker(poll_interval=0.5)
    while True:
        worker.run_once()
        job = get_job(job_id)
        if job["status"] in store.TERMINAL:
            if job["status"] != "succeeded":
                raise SystemExit(f"job {job_id} {job['status']}: {job['error']}")
            return job
        time.sleep(0.5)


def supervised_model(adapter: Path | None) -> tuple[str, float | None]:
    """The quickstart's fine-tune (reused when this home has it, or copied in from ``adapter``, the
    folder of one trained elsewhere) and its training seconds."""
    from tunery import quickstart as qs

    if adapter is not None:
        import shutil

        from tunery.home import home
        from tunery.models import ModelRecord, find, register

        name = f"ft:{MODEL}:travel:{adapter.name.rsplit('_', 1)[-1]}"
        if find(name) is None:
            dest = home().models / name.replace(":", "_")
            shutil.copytree(adapter, dest)
            register(ModelRecord(id=name, kind="fine-tuned", path=dest, source=f"copy of {adapter}", parent=MODEL,
                                 method="lora", meta={"catalog": MODEL}))
        return name, None
    plan = qs.Plan()
    job = qs.previous_job(plan)
    if job is not None:
        return job["fine_tuned_model"], None
    t0 = time.perf_counter()
    job = _drive(qs.create_job(plan)["id"])
    return job["fine_tuned_model"], time.perf_counter() - t0


def onpolicy_pairs(sft: str, out: Path, console) -> Path:
    """Pairs of model ``sft``'s own answers (the supervised model, or the previous DPO round's) to the
    training prompts (``tunery eval pairs`` with the quickstart's checks; 4 samples at temperature 0.6,
    128 tokens, seed 0, served at int8)."""
    from tunery import quickstart as qs
    from tunery.chat import GenerationParams
    from tunery.evals import parse_evaluators
    from tunery.evals.onpolicy import make_pairs, write_pairs
    from tunery.serving.resolve import get_chat_model

    checks = parse_evaluators([spec for spec, _, _ in qs.CHECKS if not spec.startswith("style_similarity")])
    t0 = time.perf_counter()
    report = make_pairs(get_chat_model(sft, precision="int8"), qs.training_prompts(), checks,
                        system=qs.system_message(), samples=4, params=GenerationParams(temperature=0.6, max_tokens=128))
    write_pairs(report, out)
    console.print(f"on-policy pairs: {report.to_dict()} in {time.perf_counter() - t0:.0f} s -> {out}")
    return out


def mixed_pairs(onpolicy: Path, times: int, out: Path, answer_times: int = 1) -> Path:
    """The on-policy pairs ``times`` over, those from questions to answer ``answer_times - 1`` more
    times, then the bundled hand-written ones (``tunery.quickstart.preference_mix``, whose recipe,
    run C, is ``times`` 1 and ``answer_times`` 2)."""
    from tunery import quickstart as qs

    out.write_text(qs.preference_mix(onpolicy.read_text(encoding="utf-8"), times=times, answer_times=answer_times),
                   encoding="utf-8")
    return out


def dpo_model(start: str, hp: dict, pairs: Path = PREFS) -> tuple[dict, float]:
    from tunery.data import files
    from tunery.jobs import create_job

    train, valid = files.create_from_path(pairs, "fine-tune"), files.create_from_path(PREFS_VALID, "fine-tune")
    t0 = time.perf_counter()
    job = create_job(model=start, training_file=train.id, validation_file=valid.id, seed=42, suffix="travel-dpo",
                     method={"type": "dpo", "dpo": {"hyperparameters": hp}})
    return _drive(job["id"]), time.perf_counter() - t0


def _logps(name: str, pairs) -> list:
    import torch

    from tunery.models.loading import load_model
    from tunery.training.dpo import sequence_logps

    model, tok, _ = load_model(name, merge=True)
    with torch.no_grad():
        return [sequence_logps(model, [c, r], tok.pad_token_id, "cpu") for c, r in pairs]


def preference_accuracy(policy: str, reference: str) -> float:
    """Share of held-out pairs whose chosen answer gains more log-probability than the rejected
    one, from ``reference`` to ``policy`` (the sign of DPO's implicit reward margin)."""
    from tunery.data.preference import encode_pairs, load_pairs
    from tunery.models.loading import load_tokenizer

    pairs = encode_pairs(load_pairs(PREFS_VALID, purpose="validation"), load_tokenizer(policy))
    pol, ref = _logps(policy, pairs), _logps(reference, pairs)
    wins = [float((p[0] - r[0]) - (p[1] - r[1])) > 0 for p, r in zip(pol, ref, strict=True)]
    return sum(wins) / len(wins)


def style_loss(name: str) -> float:
    """Mean token loss on the supervised validation file's answers (how far from the data's style)."""
    import torch

    from tunery.chat_template import encode
    from tunery.data.validate import load_examples
    from tunery.models.loading import load_model
    from tunery.training.batching import collate
    from tunery.training.trainer import batch_loss

    model, tok, _ = load_model(name, merge=True)
    total = n = 0.0
    with torch.no_grad():
        for conv in load_examples(DATA / "validation.jsonl", purpose="validation"):
            loss, cnt, _ = batch_loss(model, collate([encode(conv, tok)], tok.pad_token_id))
            total, n = total + float(loss), n + cnt
    return total / n


def quality(args) -> None:
    from rich.console import Console

    from tunery import quickstart as qs
    from tunery.evals.terminal import headline_table
    from tunery.home import home
    from tunery.models import ensure

    console = Console(width=140)
    ensure(MODEL)
    sft, sft_seconds = supervised_model(args.supervised_adapter)
    console.print(f"supervised: {sft}" + (f" (trained in {sft_seconds:.0f} s)" if sft_seconds else " (reused)"))
    hp = {k: v for k, v in (("beta", args.beta), ("n_epochs", args.epochs),
                            ("learning_rate_multiplier", args.lr_multiplier)) if v != "auto"}
    dpo = sft
    for round_ in range(1, args.rounds + 1):  # each round samples the previous round's model
        tag = "" if round_ == 1 else f"-r{round_}"
        pairs = onpolicy_pairs(dpo, home().root / f"onpolicy-pairs{tag}.jsonl", console) if args.onpolicy else PREFS
        if args.onpolicy and args.mix_bundled:
            pairs = mixed_pairs(pairs, args.mix_bundled, home().root / f"mixed-pairs-{args.mix_bundled}to1{tag}.jsonl",
                                answer_times=args.answer_pairs)
            console.print(f"training pairs: the on-policy ones x{args.mix_bundled} (those from questions to answer "
                          f"x{args.mix_bundled + args.answer_pairs - 1}) plus the bundled ones -> {pairs}")
        job, seconds = dpo_model(dpo, hp, pairs)
        dpo = job["fine_tuned_model"]
    from tunery.jobs import metrics

    rows = metrics(job["id"])
    last = next(r for r in reversed(rows) if "full_valid_rewards/accuracies" in r)
    console.print(f"DPO (round {args.rounds}): {dpo} in {seconds:.0f} s, hyperparameters {job['hyperparameters']}; last step: "
                  f"loss {rows[-1]['train_loss']:.4f}, reward accuracy {rows[-1]['rewards/accuracies']:.2f}, "
                  f"margin {rows[-1]['rewards/margins']:.3f}; held-out (job) reward accuracy "
                  f"{last['full_valid_rewards/accuracies']:.3f}, loss {last['full_valid_loss']:.4f}")
    acc = preference_accuracy(dpo, sft)
    console.print(f"held-out preference accuracy (registered model vs supervised, recomputed; after round 1 the "
                  f"reference is still the supervised model, not the round's starting point): {acc:.1%}")
    console.print(f"style loss on validation.jsonl answers: supervised {style_loss(sft):.4f}, "
                  f"supervised+DPO {style_loss(dpo):.4f}")
    for precision in args.precision:
        from tunery.chat import GenerationParams
        from tunery.evals import Headline, compare_models, load_questions, parse_evaluator
        from tunery.serving.resolve import get_chat_model

        questions = load_questions(args.questions_file or qs.QUESTIONS)[: args.questions]
        checks = [(parse_evaluator(spec), label, reads) for spec, label, reads in qs.CHECKS]
        t0 = time.perf_counter()
        report = compare_models(get_chat_model(sft, precision=precision), get_chat_model(dpo, precision=precision),
                                questions, qs.system_message(), [e for e, _, _ in checks],
                                headline=[Headline(label, e.name, invert=reads == "fail", mean=reads == "mean")
                                          for e, label, reads in checks],
                                params=GenerationParams(temperature=0.0, max_tokens=128),
                                title=f"supervised vs supervised+DPO ({precision})")
        console.print(f"\n[bold]{precision}[/] ({time.perf_counter() - t0:.0f} s to answer and score)")
        console.print(headline_table(report))
        for by_model in report.by_question()[:SHOWN]:
            console.print(f"\nQ: {next(iter(by_model.values()))['question']}", markup=False)
            for m in report.models:
                console.print(f"  [{m}] {by_model[m]['answer']}", markup=False)


# --- throughput -----------------------------------------------------------------------------------

def settings(args) -> dict:
    from tunery.models.catalog import CATALOG
    from tunery.training.config import DEFAULT_BETA, DPO_LEARNING_RATE_SCALE

    d = CATALOG[MODEL].training
    return {"r": d.lora_r, "alpha": d.lora_alpha, "dropout": d.lora_dropout, "targets": list(d.lora_target_modules),
            "layers": list(d.lora_layers) if d.lora_layers else None, "batch_size": args.batch_size,
            "lr": d.lora_learning_rate * DPO_LEARNING_RATE_SCALE, "epochs": args.epochs, "seed": 42, "max_length": 2048,
            "warmup_ratio": 0.05, "beta": DEFAULT_BETA, "pairs": args.pairs}


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _pairs(n: int | None) -> list:
    from tunery.data.preference import load_pairs

    return load_pairs(PREFS)[:n] if n else load_pairs(PREFS)


def run_tunery(s) -> dict:
    import tempfile

    from tunery.data.preference import encode_pairs
    from tunery.models import ensure
    from tunery.models.loading import load_tokenizer
    from tunery.training import TrainingConfig
    from tunery.training.config import LoraSettings
    from tunery.training.dpo import DPOTrainer

    rec = ensure(MODEL)
    tok = load_tokenizer(rec)
    pairs = encode_pairs(_pairs(s["pairs"]), tok, max_length=s["max_length"])
    cfg = TrainingConfig(method="lora", n_epochs=s["epochs"], batch_size=s["batch_size"], learning_rate=s["lr"],
                         seed=s["seed"], max_seq_length=s["max_length"], warmup_ratio=s["warmup_ratio"],
                         lora=LoraSettings(s["r"], s["alpha"], s["dropout"], tuple(s["targets"]),
                                           tuple(s["layers"]) if s["layers"] else None),
                         checkpoint_every=0, epoch_checkpoints=False, objective="dpo", beta=s["beta"])
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()  # the reference log-probs are part of the run: timed from before them
        trainer = DPOTrainer(base_path=rec.path, tokenizer=tok, config=cfg, train=pairs, valid=None,
                             output_dir=Path(out), beta=s["beta"])
        result = trainer.run(resume=False)
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "losses": [m["train_loss"] for m in result.metrics],
            "accuracies": [m["rewards/accuracies"] for m in result.metrics]}


def run_trl(s, tmp: str) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from tunery.models import ensure
    from tunery.models.loading import load_base_model, load_tokenizer

    rec = ensure(MODEL)
    tok = load_tokenizer(rec)
    rows = [{"prompt": r["input"]["messages"], "chosen": r["preferred_output"],
             "rejected": r["non_preferred_output"]} for r in _rows(PREFS)[:s["pairs"] or None]]
    model = load_base_model(rec.path, dtype=torch.float32)
    steps = -(-len(rows) // s["batch_size"]) * s["epochs"]
    cfg = DPOConfig(output_dir=tmp, per_device_train_batch_size=s["batch_size"], gradient_accumulation_steps=1,
                    learning_rate=s["lr"], num_train_epochs=s["epochs"], lr_scheduler_type="linear",
                    warmup_steps=max(1, int(steps * s["warmup_ratio"])), weight_decay=0.0, max_grad_norm=1.0,
                    seed=s["seed"], beta=s["beta"], loss_type="sigmoid", max_length=s["max_length"],
                    logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, bf16=False, fp16=False,
                    dataloader_num_workers=0, disable_tqdm=True)
    lcfg = LoraConfig(r=s["r"], lora_alpha=s["alpha"], lora_dropout=s["dropout"], target_modules=s["targets"],
                      layers_to_transform=s["layers"], bias="none", task_type="CAUSAL_LM")
    losses: list[float] = []
    accuracies: list[float] = []

    class Log(TrainerCallback):
        def on_log(self, a, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))
                accuracies.append(float(logs.get("rewards/accuracies", float("nan"))))

    ds = Dataset.from_list(rows)
    t0 = time.perf_counter()  # dataset preparation (tokenizing) is in TRL's constructor: timed too
    trainer = DPOTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok, peft_config=lcfg,
                         callbacks=[Log()])
    trainer.train()
    return {"seconds": time.perf_counter() - t0, "losses": losses, "accuracies": accuracies}


def throughput(args) -> None:
    from tunery.data.preference import encode_pairs
    from tunery.models import ensure
    from tunery.models.loading import load_tokenizer

    s = settings(args)
    results = {}
    for system in ("tunery", "trl"):
        print(f"running {system} ...", flush=True)
        proc = subprocess.run([sys.executable, __file__, "child", "--system", system, "--epochs", str(args.epochs),
                               "--batch-size", str(args.batch_size)] + (["--pairs", str(args.pairs)] if args.pairs else []),
                              capture_output=True, text=True,
                              env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            print(proc.stdout[-3000:], proc.stderr[-3000:])
            raise SystemExit(f"{system} run failed")
        results[system] = json.loads(line[7:])
    pairs = encode_pairs(_pairs(args.pairs), load_tokenizer(ensure(MODEL)))
    n_pairs = len(pairs) * args.epochs
    tokens = sum(len(c) + len(r) for c, r in pairs) * args.epochs
    print(f"\nDPO, SmolLM2-135M-Instruct, {len(pairs)} pairs x {args.epochs} epoch(s), LoRA r={s['r']} on "
          f"layers {s['layers'][0]}-{s['layers'][-1]}, lr {s['lr']:g}, batch {args.batch_size}, beta {s['beta']}, "
          f"fp32, {os.cpu_count()} CPUs; {tokens} tokens (chosen + rejected sequences)")
    print(f"{'system':<8} {'seconds':>8} {'pairs/s':>8} {'tokens/s':>9} {'first loss':>11} {'final loss':>11} "
          f"{'final acc':>10} {'peak RSS MB':>12}")
    for name, r in results.items():
        print(f"{name:<8} {r['seconds']:>8.1f} {n_pairs / r['seconds']:>8.2f} {tokens / r['seconds']:>9.0f} "
              f"{r['losses'][0]:>11.4f} {r['losses'][-1]:>11.4f} {r['accuracies'][-1]:>10.2f} "
              f"{r['peak_rss_mb']:>12.0f}")
    print(f"speed-up: {results['trl']['seconds'] / results['tunery']['seconds']:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=["quality", "throughput", "child"])
    ap.add_argument("--precision", action="append", help="serving precision for the comparison (repeat; "
                                                         "default fp32)")
    ap.add_argument("--beta", default="auto")
    ap.add_argument("--epochs", default="auto", help="quality: the DPO job's n_epochs; throughput: default 1")
    ap.add_argument("--lr-multiplier", default="auto")
    ap.add_argument("--batch-size", type=int, default=4, help="throughput: pairs per step (default 4, what auto "
                                                              "picks for 64 pairs)")
    ap.add_argument("--supervised-adapter", type=Path, help="quality: the quickstart's fine-tune trained in another "
                                                            "home (its model folder), instead of training it here")
    ap.add_argument("--questions", type=int, default=None, help="quality: the first N held-out questions only "
                                                               "(both kinds alternate; default all 66)")
    ap.add_argument("--pairs", type=int, default=None, help="throughput: the first N pairs only (default all 64)")
    ap.add_argument("--onpolicy", action="store_true", help="quality: train DPO on pairs of the supervised "
                                                            "model's own answers (`tunery eval pairs`) instead of "
                                                            "the bundled pairs")
    ap.add_argument("--mix-bundled", type=int, default=0, metavar="N",
                    help="quality, with --onpolicy: train on the on-policy pairs N times over plus the bundled "
                         "pairs (RESULTS: 1 with the say-no pairs, 165 to 64; 3 with run J's 66)")
    ap.add_argument("--answer-pairs", type=int, default=1, metavar="N",
                    help="quality, with --mix-bundled: the on-policy pairs from questions to answer N times in all "
                         "(RESULTS: run C, 2; default 1)")
    ap.add_argument("--rounds", type=int, default=1, metavar="N",
                    help="quality, with --onpolicy: N rounds, each sampling pairs from the previous round's model "
                         "and training DPO from it (RESULTS: 'A second on-policy round'; default 1)")
    ap.add_argument("--questions-file", type=Path, help="quality: held-out questions with `expect` labels "
                                                        "(default the quickstart's questions.jsonl; "
                                                        "benchmarks/data/dpo-check-questions.jsonl: 40 more)")
    ap.add_argument("--system", choices=["tunery", "trl"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.precision = args.precision or ["fp32"]
    if args.part == "quality":
        if args.rounds < 1 or (args.rounds > 1 and not args.onpolicy):
            ap.error("--rounds takes 1 or more, and more than 1 only with --onpolicy (the bundled pairs do not change)")
        if args.answer_pairs < 1 or (args.answer_pairs > 1 and not args.mix_bundled):
            ap.error("--answer-pairs takes 1 or more, and more than 1 only with --onpolicy --mix-bundled N")
        for key in ("beta", "epochs", "lr_multiplier"):
            value = getattr(args, key)
            setattr(args, key, value if value == "auto" else float(value) if key != "epochs" else int(value))
        return quality(args)
    args.epochs = 1 if args.epochs == "auto" else int(args.epochs)
    if args.part == "throughput":
        return throughput(args)
    s = settings(args)
    out = run_tunery(s) if args.system == "tunery" else run_trl(s, "/tmp/tunery-bench-trl-dpo")
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
