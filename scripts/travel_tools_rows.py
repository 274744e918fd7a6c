"""What the travel tool data rounds (``scripts/travel_tools_round*.py``, issue 17) share: the
example's files, the held-out questions a new training row must keep away from, and a row in the
example's shape (system turn, user, the calls, their tool results, the answer in words).

A round makes one :class:`Round` after any rewrite of the files it does first, adds rows through
:meth:`Round.add`, and writes them with :meth:`Round.save`."""
import difflib
import json
import random
import re
import string
from pathlib import Path

D = Path(__file__).resolve().parents[1] / "src" / "tunery" / "examples" / "travel_tools"

# the example's made-up rates, US dollars per unit, for the tool results of conversion rows
USD = {"AUD": 0.66, "BRL": 0.18, "CAD": 0.73, "CHF": 1.13, "CNY": 0.14, "CZK": 0.044, "EUR": 1.09,
       "GBP": 1.27, "INR": 0.012, "JPY": 0.0067, "KRW": 0.00073, "MXN": 0.058, "NOK": 0.094, "NZD": 0.61,
       "SEK": 0.095, "THB": 0.028, "TRY": 0.031, "USD": 1.0, "ZAR": 0.054}


def convert(n, f, t):
    rate = round(USD[f] / USD[t], 4)
    return {"amount": n, "from": f, "to": t, "rate": rate, "result": round(n * rate, 2)}


# the visa function's made-up results: (visa required, details)
VISA_RESULTS = [(False, "visa-free stay up to 30 days"), (False, "visa-free stay up to 90 days"),
                (True, "e-visa, apply online before travel"), (True, "visa required; apply at an embassy")]


def conversion_answer(results):
    """The answer in words after conversion results: "2,400 USD is about 3,287.76 CAD." for each."""
    return " ".join(f"{r['amount']:,{'.2f' * isinstance(r['amount'], float)}} {r['from']} is about "
                    f"{r['result']:,.2f} {r['to']}." for r in results)


def forecast_answer(r):
    """A forecast result in words: "Lisbon: light rain, 14°C / 9°C."."""
    return f"{r['city']}: {r['summary']}, {r['high_c']}°C / {r['low_c']}°C."


def lines(name):
    return [json.loads(x) for x in (D / name).read_text(encoding="utf-8").splitlines() if x.strip()]


def write(name, rows):
    (D / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def countries():
    """The visa function's reading of a nationality (``nationalities.json``): every way of writing
    one, casefolded, -> the country as the table spells it."""
    table = json.loads((D / "nationalities.json").read_text(encoding="utf-8"))
    return {name.casefold(): country for country, others in table.items() for name in [country, *others]}


def currencies():
    """The conversion function's reading of a currency (``currencies.json``): every way of writing
    one, casefolded, -> its code."""
    table = json.loads((D / "currencies.json").read_text(encoding="utf-8"))
    return {name.casefold(): code for code, others in table.items() for name in [code, *others]}


def spellings():
    """Each code's spellings (``currencies.json``) that follow or precede an amount: a plural's
    singular and the singular names ("18,500 pound sterling", "52.47 krona") left out."""
    table = json.loads((D / "currencies.json").read_text(encoding="utf-8"))
    return {code: [w for w in others if w + "s" not in others and w not in SINGULAR] for code, others in table.items()}


SINGULAR = {"pound sterling", "krona", "Swedish krona", "krone", "Norwegian krone", "real", "Brazilian real"}
BEFORE = {"Rs", "Rs.", "Fr.", "SFr.", "SFr"}  # written before the figure, like a sign: "Rs 450", "SFr. 62.50"


def sign(said):
    return not said[0].isalpha() or said.endswith("$") or said.endswith("¥")


def money(said, text):
    """The amount with its currency as ``said`` writes it: a sign before the figure, "R$62.50" (with a
    space after "Rs" or "SFr."), anything else after it, "62.50 kiwi dollars"."""
    return f"{said}{text}" if sign(said) else f"{said} {text}" if said in BEFORE else f"{text} {said}"


def held_files():
    """Every held-out file: the question sets and the validation file."""
    return sorted(p.name for p in D.glob("*questions.jsonl")) + ["validation.jsonl"]


def rewrite_calls(function, retool, rewrite):
    """Change a function's contract in place: every ``tools`` list of the example's files gets
    ``retool``'s change, and every call to ``function`` in train.jsonl and validation.jsonl the
    arguments ``rewrite(arguments, user)`` returns (``user``: the last user message before the call).
    Returns the number of calls rewritten."""
    changed = 0
    for name in ["train.jsonl", "validation.jsonl"]:
        rows = lines(name)
        for r in rows:
            retool(r["tools"])
            for i, m in enumerate(r["messages"]):
                for call in m.get("tool_calls") or []:
                    if call["function"]["name"] == function:
                        user = [x["content"] for x in r["messages"][:i] if x["role"] == "user"][-1]
                        args = rewrite(json.loads(call["function"]["arguments"]), user)
                        call["function"]["arguments"] = json.dumps(args, ensure_ascii=False)
                        changed += 1
        write(name, rows)
    for name in held_files()[:-1]:
        write(name, [{**q, "tools": retool(q["tools"])} if "tools" in q else q for q in lines(name)])
    return changed


class Round:
    """train.jsonl as it is now, the held-out text, and the rows a round adds (``out``).

    ``rng`` is the round's one seeded generator: its draws and the rows' call ids come from it, so a
    round run twice on the same files writes the same bytes."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.train = lines("train.jsonl")
        self.tools, self.system = self.train[0]["tools"], self.train[0]["messages"][0]
        held = held_files()
        self.held_text = "".join((D / f).read_text(encoding="utf-8") for f in held)
        self.held_q = [q["question"] for f in held[:-1] for q in lines(f)]
        self.held_q += [m["content"] for r in lines("validation.jsonl") for m in r["messages"] if m["role"] == "user"]
        self.out = []

    def held(self, name):
        """Whether a held-out file names ``name`` (a whole word, any case)."""
        return re.search(rf"\b{re.escape(name)}\b", self.held_text, re.IGNORECASE) is not None

    def near_held(self, user, limit=0.75):
        return any(difflib.SequenceMatcher(None, user.lower(), h.lower()).ratio() >= limit for h in self.held_q)

    def seen(self, user):
        return any(m["role"] == "user" and m["content"] == user for r in self.train + self.out for m in r["messages"])

    def add(self, names, user, calls=(), results=(), answer=""):
        """Add one row unless it names a held-out place (``names``: every place in its prompt and
        answer), repeats a training prompt or comes within 0.75 of a held-out one; 1 if added, else 0.
        ``calls`` are (function, arguments) pairs, answered by ``results`` in order."""
        if any(self.held(n) for n in names) or self.seen(user) or self.near_held(user):
            return 0
        msgs = [self.system, {"role": "user", "content": user}]
        if calls:
            ids = ["call_" + "".join(self.rng.choice(string.ascii_lowercase + string.digits) for _ in range(10))
                   for _ in calls]
            msgs.append({"role": "assistant", "content": None, "tool_calls": [
                {"id": i, "type": "function", "function": {"name": n, "arguments": json.dumps(a, ensure_ascii=False)}}
                for i, (n, a) in zip(ids, calls, strict=True)]})
            msgs += [{"role": "tool", "tool_call_id": i, "content": json.dumps(r, ensure_ascii=False)}
                     for i, r in zip(ids, results, strict=True)]
        self.out.append({"messages": [*msgs, {"role": "assistant", "content": answer}], "tools": self.tools})
        return 1

    def save(self):
        write("train.jsonl", self.train + self.out)
        return len(self.train), len(self.out)
