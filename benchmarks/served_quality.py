"""Does the fast path serve the same model? A base model and a LoRA fine-tune of it, each served
at every precision against the float32 PyTorch model, in one run:

1. **held-out loss** (the trainer's loss positions of the bundled travel validation chats), top-1
   and greedy-token agreement, for the base (its compiled copy) and the fine-tune (the copy with
   the fine-tune's adapter active, exactly as the engine serves it), against PyTorch float32 (the
   fine-tune with PEFT, unmerged). Goal: within 1% of float32.
2. with ``--behaviour``, **the quickstart's behaviour checks** (``tunery.quickstart.compare``: the
   66 held-out questions, greedy, the same system message) at each precision, fp32 included.
   Goal: every metric within 5 points of fp32.

    python benchmarks/served_quality.py FINE_TUNE [--precisions int8,int4] [--behaviour]

Run it in the TUNERY_HOME that holds the fine-tune (the quickstart's, say).
"""

from __future__ import annotations

import argparse
import json
import os
import time


def loss_table(ft: str, precisions: list[str]) -> None:
    import torch

    from tunery.compiled import cache
    from tunery.compiled.scorers import OnnxScorer, TorchScorer
    from tunery.compiled.verify import DEFAULT_PROMPTS, Tolerance, verify
    from tunery.models import get
    from tunery.models.loading import load_model, stop_token_ids
    from tunery.serving.manager import _adapter_for, copy_layers, route

    rec = get(ft)
    base = get(rec.parent)
    texts = cache._bundled_chats(validation=True)
    tol = Tolerance(0.0, 0.0, cache.QUALITY_GUARD)
    sources = {}
    for name in (base.id, ft):
        model, tok, _ = load_model(name, dtype=torch.float32, merge=False)
        sources[name] = (TorchScorer(model), tok)
    print("| precision | model | build s | fp32 loss | served loss | change | top-1 | greedy tokens |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for precision in precisions:
        t = time.perf_counter()
        kind = route(rec, base, precision)[0]  # the copy the server picks for this fine-tune
        built = cache.ensure(base.path, precision, layers=copy_layers(kind, base), name=base.id)
        took = time.perf_counter() - t
        adapter = _adapter_for(rec)
        served = {base.id: OnnxScorer(built.folder),
                  ft: OnnxScorer(built.folder, built.adapter_file(adapter.path, adapter.key))}
        for name in (base.id, ft):
            source, tok = sources[name]
            r = verify(source, served[name], tok, fmt="compiled", quantize=precision, tol=tol,
                       stop_ids=stop_token_ids(None, base.path), texts=texts, prompts=DEFAULT_PROMPTS,
                       greedy_tokens=24)
            label = "fine-tune" if name == ft else "base"
            print(f"| {precision} | {label} | {took:.0f} | {r.source_loss:.4f} | {r.export_loss:.4f} | "
                  f"{r.loss_delta:+.2%} | {r.top1_agreement:.1%} | {r.greedy_agreement:.0%} |", flush=True)


def behaviour(ft: str, precisions: list[str]) -> None:
    from tunery import quickstart as qs
    from tunery.models import get
    from tunery.serving.manager import shutdown

    plan = qs.Plan(model=get(ft).parent)
    rows: dict[str, dict[str, tuple]] = {}
    for precision in ["fp32", *precisions]:
        os.environ["TUNERY_PRECISION"] = precision
        shutdown()
        t = time.perf_counter()
        report = qs.compare(plan, ft)
        print(f"{precision}: compared in {time.perf_counter() - t:.0f} s", flush=True)
        for h in report.headline_rows():
            rows.setdefault(h["label"], {})[precision] = (h["values"][plan.model], h["values"][ft], h["percent"])
        answers = [r["answer"] for r in report.rows if r["model"] == ft][:5]
        print(json.dumps({precision: answers}, ensure_ascii=False, indent=1))
    cols = ["fp32", *precisions]
    print("| check | " + " | ".join(f"{p} base / fine-tune" for p in cols) + " |")
    print("| --- |" + " --- |" * len(cols))
    for label, by in rows.items():
        cells = []
        for p in cols:
            b, t, pct = by[p]
            fmt = (lambda v: "–" if v is None else f"{v:.0%}") if pct else (lambda v: "–" if v is None else f"{v:.2f}")
            cells.append(f"{fmt(b)} / {fmt(t)}")
        print(f"| {label} | " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("fine_tune", help="a registered LoRA fine-tune (its base is measured too)")
    ap.add_argument("--precisions", default="int8,int4", help="compiled precisions to measure")
    ap.add_argument("--behaviour", action="store_true", help="also run the quickstart's checks at each precision")
    args = ap.parse_args()
    precisions = [p for p in args.precisions.split(",") if p]
    loss_table(args.fine_tune, precisions)
    if args.behaviour:
        behaviour(args.fine_tune, precisions)


if __name__ == "__main__":
    main()
