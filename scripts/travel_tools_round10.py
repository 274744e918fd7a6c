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
import re
import sys

from travel_tools_rows import USD, Round, convert

rows = Round(1710)
rng, train, near_held = rows.rng, rows.train, rows.near_held


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


def add(user, calls):
    results = [convert(*c) for c in calls]
    answer = " ".join(f"{res['amount']:,} {res['from']} is about {res['result']:,} {res['to']}." for res in results)
    return rows.add([], user, [("convert_currency", {"amount": n, "from": f, "to": t}) for n, f, t in calls],
                    results, answer)


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
print("rows {} + {}".format(*rows.save()), file=sys.stderr)
