"""The thirteenth round of the bundled travel tool data (issue 17), in two parts.

1. The conversion function's contract changes, as the visa function's did in round 9: ``from`` and
   ``to`` are the currencies *in the user's own words* ("¥", "R$", "kiwi dollars", "euros" or
   "EUR"), and the tool's code (here, the example's ``currencies.json``, read by the ``tool_calls``
   evaluator's ``aliases=``) maps them to codes. Until now they were codes from an enum, and about
   half of the tenth set's conversion misses were a sign or a nickname mapped to the wrong code ("¥"
   -> KRW, "R$" -> MXN, "C$" -> CNY); the model copies words well and maps unseen ones badly. Every
   ``tools`` list in the example's files gets the new parameters, and every conversion call in
   train.jsonl and validation.jsonl gets the words its user wrote (the first spelling of the call's
   code in the prompt, not inside a longer one: "dollars" in "New Zealand dollars" is not USD; the
   tool's results still give codes: that is what the code answers).
2. 40 new conversion rows whose amount's currency is each sign of the table ("¥", "$", "R$" and
   "C$", the tenth set's misses, twice; "Rs 450", "SFr. 62.50" too) or a name or nickname, and whose
   target is a name, a code or one of "€", "£", "$", "¥"; a sixth of them ask for two currencies
   (two calls). Their amounts are often small decimals ("62.50"): round 12's rows wrote "12.500,00"
   with a point between thousands, and its model read "62.50 CHF" as 6250.

Seeded, and kept away from the held-out files (the eleventh set included, written blind and
committed before this script) as ``Round.add`` keeps every round. Run once, on the twelfth round's
files: it rewrites them in place and prints the counts; on its own output it stops at the first
conversion call, whose words are no longer a code. Appends 40 rows to round 12's 808."""
import re
import sys

from travel_tools_rows import (
    BEFORE,
    USD,
    Round,
    conversion_answer,
    convert,
    currencies,
    money,
    rewrite_calls,
    sign,
    spellings,
)

CODE = currencies()
WORDS = {"from": "the currency to convert from, in the user's own words: a code, name, sign or nickname "
                 "(e.g. EUR, euros or €)",
         "to": "the currency to convert to, in the user's own words: a code, name, sign or nickname "
               "(e.g. JPY, yen or ¥)"}


def retool(tools):
    for t in tools:
        if t["function"]["name"] == "convert_currency":
            props = t["function"]["parameters"]["properties"]
            for side, description in WORDS.items():
                props[side] = {"type": "string", "description": description}
    return tools


def named(text):
    """Every spelling of the table found in ``text``: (start, end, code), as a whole word where it
    starts or ends with a letter or digit (a sign needs no boundary), and not inside a longer one
    ("dollars" in "New Zealand dollars" is not US dollars)."""
    hits = []
    for said, code in CODE.items():
        edge = (r"(?<!\w)" if said[0].isalnum() else "", r"(?!\w)" if said[-1].isalnum() else "")
        hits += [(m.start(), m.end(), code) for m in re.finditer(edge[0] + re.escape(said) + edge[1], text, re.I)]
    return [h for h in hits if not any(a <= h[0] and h[1] <= b and b - a > h[1] - h[0] for a, b, _ in hits)]


def words_for(text, code):
    """The user's words for ``code``: its first spelling :func:`named` in ``text``."""
    spans = sorted((a, b) for a, b, c in named(text) if c == code)
    if not spans:
        raise SystemExit(f"no words for {code!r} in {text!r}")
    return text[slice(*spans[0])]


# --- 1. the contract ------------------------------------------------------------------------------
def in_words(args, user):
    for side in ("from", "to"):
        if args[side] not in USD:
            raise SystemExit(f"{args[side]!r} is not a code; run this once, on round 12's files")
        args[side] = words_for(user, args[side])
    return args


print("conversion calls now in the user's words", rewrite_calls("convert_currency", retool, in_words), file=sys.stderr)

# --- 2. new rows ----------------------------------------------------------------------------------
rows = Round(1313)
rng, add = rows.rng, rows.add
TABLE = spellings()


def amount(code, small):
    """An amount and how it is written: small decimals ("62.50") half the time (never for yen or won,
    which have no cents), else round figures, thousands with a comma, or "k"; a meal or a ticket
    (``small``) stays under a thousand, or under 100,000 yen or won."""
    cents = code not in ("JPY", "KRW")
    scale = 1 if cents else 100
    kinds = ["whole"] + ["decimal"] * 3 * cents if small else ["whole", "comma", "k"] + ["decimal"] * 3 * cents
    kind = rng.choice(kinds)
    if kind == "decimal":
        n = round(rng.uniform(2, 95), 2) if rng.random() < 0.6 else round(rng.uniform(100, 999), 2)
        return n, f"{n:.2f}"
    if kind == "whole":
        n = rng.choice([15, 40, 75, 120, 250, 300, 480, 600, 850]) * scale
        return n, f"{n:,}"
    if kind == "comma":
        n = rng.choice([1250, 2400, 3750, 12000, 18500, 45000] + [1999.99, 1380.5] * cents) * scale
        return n, f"{n:,.2f}" if isinstance(n, float) else f"{n:,}"
    n = rng.choice([1.5, 2, 3, 5, 12, 20])
    return int(n * 1000 * scale), f"{n}k"


# each sign as the amount's currency, the tenth set's misses twice, then names and nicknames
SAID = [w for code, others in TABLE.items() for w in others if sign(w) or w in BEFORE]
SAID = ["¥", "$", "R$", "C$"] * 2 + sorted(set(SAID) - {"¥", "$", "R$", "C$"})
SAID += rng.sample([w for others in TABLE.values() for w in others if w not in SAID and w not in BEFORE], 12)
# a currency to convert to: a name or code as people write one after "in" or "to", or the four signs
# people also write there
TARGETS = {code: [w for w in [*others, code] if not sign(w) and w not in BEFORE] + [w for w in others if w in {"€", "£", "$", "¥"}]
           for code, others in TABLE.items()}
SMALL = ["The museum shop charged me {a}. What's that in {t}?", "Dinner came to {a} - roughly how much in {t}?",
         "The ticket is {a}; in {t} that's how much?", "Taxi from the station was {a}. In {t}?"]
ONE = ["How much is {a} in {t}?", "{a} to {t}, please.", "what's {a} in {t}", "Convert {a} into {t}.",
       "I've got {a} left over. What's that in {t}?", "Can you change {a} to {t} for me?", "{a} in {t}?"]
TWO = ["How much is {a} in {t} and in {u}?", "Convert {a} to {t} and also to {u}.",
       "What's {a} worth in {t}, and in {u}?", "I have {a}. Show me it in {t} and {u}."]
codes = sorted(USD)


def row(said, targets, template):
    """One conversion row: an amount in ``said``'s currency into each of ``targets``."""
    f = CODE[said.casefold()]
    n, text = amount(f, template in SMALL)
    tos = [rng.choice(TARGETS[t]) for t in targets]
    calls = [("convert_currency", {"amount": n, "from": said, "to": to}) for to in tos]
    results = [convert(n, f, t) for t in targets]
    user = template.format(a=money(said, text), **dict(zip("tu", tos, strict=False)))
    return add([], user, calls, results, conversion_answer(results))


n_one = n_two = 0
for i, said in enumerate(SAID):
    others = [c for c in codes if c != CODE[said.casefold()]]
    if i % 6 == 5:
        n_two += row(said, rng.sample(others, 2), rng.choice(TWO))
    else:
        n_one += row(said, [rng.choice(others)], rng.choice(SMALL + ONE))
print("conversions", n_one, "two currencies", n_two, file=sys.stderr)
print("rows {} + {}".format(*rows.save()), file=sys.stderr)
