"""Tool calling before and after a default LoRA fine-tune (issue #17's first goal).

Fine-tunes SmolLM2-135M-Instruct with the job path and default settings (as the quickstart does)
on the bundled ``travel_tools`` train set, then asks base and tuned every held-out question of
``travel_tools/questions.jsonl`` with the train set's system message and tools, greedy, and scores
the answers with the ``tool_calls`` evaluator. Prints the pass rate on the questions that need a
call and on those that need none, and each answer with its verdict.

    TUNERY_HOME=/tmp/bench-tools timeout 1500 .venv/bin/python benchmarks/tool_calling.py

Generation is transformers' ``generate`` on :func:`tunery.chat_template.prompt_ids` with the tools,
so the script measures the model and the rendering, not a serving engine.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator

import torch

from tunery.chat import ChatMessage, Role
from tunery.chat_template import prompt_ids
from tunery.evals import load_questions
from tunery.evals.tool_calls import ToolCalls
from tunery.examples import ROOT

DATA = ROOT / "travel_tools"


def finetune(model: str, seed: int) -> str:
    """The fine-tuned model's name, after a job with default hyperparameters."""
    from tunery.data import files
    from tunery.jobs import Worker, create_job, get_job

    train = files.create_from_path(DATA / "train.jsonl", "fine-tune")
    valid = files.create_from_path(DATA / "validation.jsonl", "fine-tune")
    job = create_job(model=model, training_file=train.id, validation_file=valid.id, suffix="tools", seed=seed)
    worker = Worker(poll_interval=0.5).start()
    try:
        while (job := get_job(job["id"]))["status"] not in ("succeeded", "failed", "cancelled"):
            time.sleep(2)
    finally:
        worker.stop()
    if job["status"] != "succeeded":
        raise SystemExit(f"fine-tune {job['status']}: {job.get('error')}")
    print(f"fine-tuned {job['fine_tuned_model']}: {json.dumps(job['hyperparameters'])}")
    return job["fine_tuned_model"]


def answers(model: str, questions: list[dict], system: str, tools: list[dict], max_tokens: int) -> Iterator[str]:
    """Each question's greedy answer, as soon as it is generated (a busy CPU takes minutes each)."""
    from tunery.models.loading import load_model

    lm, tok, _ = load_model(model, dtype=torch.float32, merge=True)
    for q in questions:
        ids = prompt_ids(tok, [ChatMessage(Role.SYSTEM, system), ChatMessage(Role.USER, q["question"])], tools=tools)
        with torch.no_grad():
            gen = lm.generate(torch.tensor([ids]), max_new_tokens=max_tokens, do_sample=False,
                              pad_token_id=tok.eos_token_id)
        yield tok.decode(gen[0, len(ids):], skip_special_tokens=True).strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--models", nargs="+", help="score only these models (no fine-tune), e.g. an earlier run's")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--max-tokens", type=int, default=72, help="enough for two calls")
    args = ap.parse_args()

    from tunery.models.pull import ensure

    ensure(args.model)
    first = json.loads((DATA / "train.jsonl").read_text().splitlines()[0])
    system, tools = first["messages"][0]["content"], first["tools"]
    questions = load_questions(DATA / "questions.jsonl")
    models = args.models
    if not models:
        started = time.perf_counter()
        models = [args.model, finetune(args.model, args.seed)]
        print(f"fine-tune: {time.perf_counter() - started:.0f} s")
    evaluator = ToolCalls()
    table = []
    for name in models:
        print(f"\n== {name}", flush=True)
        need, none = [], []
        for q, a in zip(questions, answers(name, questions, system, tools, args.max_tokens), strict=True):
            s = evaluator.score_row({**q, "answer": a})
            (none if q["expect"] == "no_tool" else need).append(s.passed)
            print(f"[{'pass' if s.passed else 'FAIL'}] {q['question']}\n    -> {a[:200]!r}\n    {s.reason}",
                  flush=True)
        table.append((name, sum(need), len(need), sum(none), len(none)))
    print(f"\n{'model':<48} {'right call (needs one)':>24} {'no call (needs none)':>22}")
    for name, a, n, b, m in table:
        print(f"{name:<48} {f'{a}/{n} = {a / n:.0%}':>24} {f'{b}/{m} = {b / m:.0%}':>22}")


if __name__ == "__main__":
    main()
