"""How sure is a tuned model when it decides to call a tool? (issue #17, the no-call goal)

Under ``tool_choice: auto`` the first token of the answer nearly always decides: the opening of a
``<tool_call>`` block, or text (a call after some text is allowed, and rare in these sets). This
asks a model each held-out question of the given sets once, through the serving engine, for one
token, and prints the probability it gives an answer that opens a call (as the server's call
threshold weighs it: ``tunery.evals.calibrate``, the measure behind ``tunery models calibrate``),
split by whether the question needs a call, and what serving with each threshold would have decided
(a threshold only stops calls the greedy answer makes). It measures the decision, not the call's
arguments (``tool_calling.py`` scores those).

    TUNERY_HOME=... python benchmarks/tool_decision.py --model ft:smollm2-135m-instruct:round9:ID \\
        --questions src/tunery/examples/travel_tools/sixth-questions.jsonl
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tool_calling import DATA, example_prompt

from tunery.evals import load_questions
from tunery.evals.calibrate import calibrate_threshold


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--questions", type=Path, nargs="+", default=[DATA / "questions.jsonl"])
    ap.add_argument("--precision", default="fp32", help="how the model is served (as tool_calling.py: fp32)")
    args = ap.parse_args()
    from tunery.serving.local import LocalChatModel

    system, tools = example_prompt()
    questions = [q for path in args.questions for q in load_questions(path)]
    cal = calibrate_threshold(LocalChatModel(args.model, precision=args.precision), questions, system=system,
                              tools=tools)
    need = sorted(d.p_call for d in cal.decisions if d.needs_call)
    none = sorted(d.p_call for d in cal.decisions if not d.needs_call)
    print(f"{args.model} ({args.precision}): P(the answer opens a call), {len(need)} questions needing a call, "
          f"{len(none)} needing none")
    for label, ps in (("needs a call", need), ("needs none", none)):
        qs = [ps[int(f * (len(ps) - 1))] for f in (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)]
        print(f"  {label:<13} min/10%/25%/median/75%/90%/max: " + " ".join(f"{x:.3f}" for x in qs))
    print(f"  {'call if P >=':>14} {'calls where needed':>20} {'none where not':>16}")
    for t, kept, stopped in cal.table():
        mark = "  <- chosen" if t == cal.threshold else ""
        print(f"  {'off' if t == 0 else f'{t:.2f}':>14} {kept:>14}/{len(need):<5} {stopped:>10}/{len(none):<5}{mark}")


if __name__ == "__main__":
    main()
