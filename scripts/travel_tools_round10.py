"""The tenth round of the bundled travel tool data (issue 17): amounts written as users write them.

The ninth-round model failed all six questions of the seventh set whose amount carries a thousands
separator ("3,500 baht", "2,000 rand"): its call took the digits before the comma. No training
prompt wrote one; every amount of 1000 or more was written "3500". So:

1. Of the training prompts whose amounts reach 1000, about half (seeded) now write them with a
   comma ("20,000 yen"); the calls are unchanged (a number has no separator).
2. New conversion rows whose amounts carry separators, decimals after them ("1,249.50"), or a
   currency sign before them ("€2,400", "£1,150"), one and two calls, in new wordings.

Nothing else changes: the no-call rows are as the ninth round left them (four rounds of more such
rows did not move the no-call rate; issue 17's note). A prompt within 0.75 of a held-out one (the
eighth set included, written and committed before this script) is dropped.

Run once, on the ninth round's files: it rewrites train.jsonl in place and prints the counts."""
import difflib
import json
import random
import re
import string
import sys
from pathlib import Path

D = Path(__file__).resolve().parents[1] / "src" / "tunery" / "examples" / "travel_tools"
HELD = sorted(p.name for p in D.glob("*questions.jsonl")) + ["validation.jsonl"]
rng = random.Random(1710)


def lines(name):
    return [json.loads(x) for x in (D / name).read_text(encoding="utf-8").splitlines() if x.strip()]


train = lines("train.jsonl")
TOOLS, SYSTEM = train[0]["tools"], train[0]["messages"][0]
held_q = [q["question"] for f in HELD[:-1] for q in lines(f)]
held_q += [m["content"] for r in lines("validation.jsonl") for m in r["messages"] if m["role"] == "user"]


def near_held(user):
    return any(difflib.SequenceMatcher(None, user.lower(), h.lower()).ratio() >= 0.75 for h in held_q)


# --- 1. separators in existing prompts ------------------------------------------------------------
rewritten = 0
for r in train:
    user = next((m for m in r["messages"] if m["role"] == "user"), None)
    if user is None or not any(c["function"]["name"] == "convert_currency" for m in r["messages"]
                               for c in m.get("tool_calls") or []):
        continue
    new = re.sub(r"(?<![\d.,])(\d{4,})(?![\d.,])", lambda m: f"{int(m.group(1)):,}", user["content"])
    if new != user["content"] and rng.random() < 0.5 and not near_held(new):
        user["content"] = new
        rewritten += 1
print("prompts now written with separators", rewritten, file=sys.stderr)

# --- 2. new rows ----------------------------------------------------------------------------------
USD = {"AUD": 0.66, "BRL": 0.18, "CAD": 0.73, "CHF": 1.13, "CNY": 0.14, "CZK": 0.044, "EUR": 1.09,
       "GBP": 1.27, "INR": 0.012, "JPY": 0.0067, "KRW": 0.00073, "MXN": 0.058, "NOK": 0.094, "NZD": 0.61,
       "SEK": 0.095, "THB": 0.028, "TRY": 0.031, "USD": 1.0, "ZAR": 0.054}
NAMES = {"AUD": ["Australian dollars", "AUD"], "BRL": ["reais", "BRL"], "CAD": ["Canadian dollars", "CAD"],
         "CHF": ["Swiss francs", "CHF"], "CNY": ["yuan", "CNY", "renminbi"], "CZK": ["koruna", "CZK"],
         "EUR": ["euros", "EUR"], "GBP": ["pounds", "GBP", "quid"], "INR": ["rupees", "INR"], "JPY": ["yen", "JPY"],
         "KRW": ["won", "KRW"], "MXN": ["Mexican pesos", "MXN"], "NOK": ["Norwegian kroner", "NOK"],
         "NZD": ["New Zealand dollars", "NZD"], "SEK": ["Swedish kronor", "SEK"], "THB": ["baht", "THB"],
         "TRY": ["lira", "TRY"], "USD": ["US dollars", "USD"], "ZAR": ["rand", "ZAR"]}
SIGN = {"EUR": "€", "GBP": "£"}
ONE = ["How much is {a} in {t}?", "{a} to {t}, please", "what's {a} worth in {t} right now", "Convert {a} into {t}.",
       "I was quoted {a} for the tour. What's that in {t}?", "Rent is {a} a month - how much is that in {t}?",
       "Could you change {a} to {t} for me?", "{a} -> {t}?", "roughly how many {t} is {a}",
       "My budget is {a}. In {t} that would be?", "The deposit is {a}; tell me the {t} equivalent.",
       "If I swap {a}, how many {t} do I get?"]
TWO = ["Two sums: {a} in {t}, and {b} in {u}.", "Convert {a} to {t}, then {b} to {u}.",
       "How much is {a} in {t}? And {b} in {u}?"]


def amount():
    """An amount a traveller writes with a separator: its number and one way to write it."""
    kind = rng.choice(["whole", "whole", "whole", "decimal", "big"])
    if kind == "decimal":
        n = round(rng.randint(1000, 9999) + rng.choice([0.5, 0.25, 0.75, 0.99]), 2)
        return n, f"{n:,.2f}"
    n = rng.choice([rng.randint(1, 99) * 100 + 1000, rng.randint(10, 99) * 1000]) if kind == "whole" \
        else rng.randint(100, 950) * 1000
    return n, f"{n:,}"


def said(code, written):
    if code in SIGN and rng.random() < 0.4:
        return SIGN[code] + written
    return f"{written} {rng.choice(NAMES[code])}"


def convert(n, f, t):
    rate = round(USD[f] / USD[t], 4)
    return {"amount": n, "from": f, "to": t, "rate": rate, "result": round(n * rate, 2)}


seen_q = {m["content"] for r in train for m in r["messages"] if m["role"] == "user"}
out = []


def add(user, calls):
    if user in seen_q or near_held(user):
        return 0
    seen_q.add(user)
    ids = ["call_" + "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(10)) for _ in calls]
    results = [convert(*c) for c in calls]
    msgs = [SYSTEM, {"role": "user", "content": user},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": i, "type": "function", "function": {"name": "convert_currency", "arguments": json.dumps(
                    {"amount": n, "from": f, "to": t})}} for i, (n, f, t) in zip(ids, calls, strict=True)]}]
    msgs += [{"role": "tool", "tool_call_id": i, "content": json.dumps(res)} for i, res in zip(ids, results, strict=True)]
    answer = " ".join(f"{res['amount']:,} {res['from']} is about {res['result']:,} {res['to']}." for res in results)
    out.append({"messages": [*msgs, {"role": "assistant", "content": answer}], "tools": TOOLS})
    return 1


codes = sorted(USD)
n_one = n_two = 0
while n_one < 20:
    f, t = rng.sample(codes, 2)
    n, written = amount()
    n_one += add(rng.choice(ONE).format(a=said(f, written), t=rng.choice(NAMES[t])), [(n, f, t)])
while n_two < 4:
    (f, t), (g, u) = rng.sample(codes, 2), rng.sample(codes, 2)
    (n, w1), (m, w2) = amount(), amount()
    n_two += add(rng.choice(TWO).format(a=said(f, w1), t=rng.choice(NAMES[t]), b=said(g, w2),
                                        u=rng.choice(NAMES[u])), [(n, f, t), (m, g, u)])
print("new conversions", n_one, "with two calls", n_two, file=sys.stderr)
(D / "train.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in train + out),
                               encoding="utf-8")
print("rows", len(train), "+", len(out), file=sys.stderr)
