"""How sure is a tuned model when it decides to call a tool? (issue #17, the no-call goal)

Under ``tool_choice: auto`` the first token of the answer nearly always decides: the opening of a
``<tool_call>`` block, or text (a call after some text is allowed, and rare in these sets). This
asks a model each held-out question of the given sets once, without generating, and prints the
probability it gives that opening token (greedy decoding calls when it is the most likely token),
split by whether the question needs a call, and what a call-only-above-a-threshold rule would have
decided at several thresholds. It measures the decision, not the call's arguments
(``tool_calling.py`` scores those).

    TUNERY_HOME=... python benchmarks/tool_decision.py --model ft:smollm2-135m-instruct:round9:ID \\
        --questions src/tunery/examples/travel_tools/sixth-questions.jsonl
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tool_calling import DATA, _messages, example_prompt

from tunery.chat_template import TOOL_CALL_OPEN, prompt_ids
from tunery.evals import load_questions
from tunery.evals.tool_calls import NO_TOOL


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--questions", type=Path, nargs="+", default=[DATA / "questions.jsonl"])
    args = ap.parse_args()
    from tunery.models.loading import load_model

    lm, tok, _ = load_model(args.model, dtype=torch.float32, merge=True)
    opening = tok.encode(TOOL_CALL_OPEN, add_special_tokens=False)[0]
    system, tools = example_prompt()
    rows: list[tuple[bool, float, bool]] = []  # (needs a call, P(opening), greedy would open)
    for path in args.questions:
        for q in load_questions(path):
            ids = prompt_ids(tok, _messages(system, q["question"]), tools=q.get("tools") or tools)
            with torch.no_grad():
                p = torch.softmax(lm(torch.tensor([ids])).logits[0, -1].float(), -1)
            rows.append((q["expect"] != NO_TOOL, float(p[opening]), int(p.argmax()) == opening))
    need = sorted(p for n, p, _ in rows if n)
    none = sorted(p for n, p, _ in rows if not n)
    print(f"{args.model}: P({TOOL_CALL_OPEN!r} first), {len(need)} questions needing a call, {len(none)} needing none")
    for label, ps in (("needs a call", need), ("needs none", none)):
        qs = [ps[int(f * (len(ps) - 1))] for f in (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)]
        print(f"  {label:<13} min/10%/25%/median/75%/90%/max: " + " ".join(f"{x:.3f}" for x in qs))
    greedy_need = sum(opens for n, _, opens in rows if n)
    greedy_none = sum(not opens for n, _, opens in rows if not n)
    print(f"  greedy (argmax): calls on {greedy_need}/{len(need)} that need one, none on {greedy_none}/{len(none)}")
    print(f"  {'call if P >=':>14} {'calls where needed':>20} {'none where not':>16}")
    for t in (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99):
        print(f"  {t:>14.2f} {sum(p >= t for p in need):>14}/{len(need):<5} {sum(p < t for p in none):>10}/{len(none):<5}")


if __name__ == "__main__":
    main()
