"""The tool-call check: did the model call the right functions with the right arguments, or none
when none is needed?

A row's expectation (column ``expect`` unless ``ref=COLUMN`` says otherwise) is either the string
``"no_tool"`` or ``{"tool_calls": [{"name": ..., "arguments": {...}}, ...]}``, as in the bundled
``travel_tools/questions.jsonl``. The model's calls are the row's ``tool_calls`` column when it has
one (OpenAI's shape, from a server that parsed them), else they are read from the answer text in
the fallback format (:func:`tunery.chat_template.parse_tool_calls`).

A row passes when the calls match the expected ones as a multiset (parallel calls in any order):
the same function names, and arguments that are a JSON object equal to the expected one after
normalisation: key order does not matter, strings compare without case and with whitespace
collapsed, and numbers by value (100 == 100.0; a boolean is not a number). A call whose arguments
are not valid JSON never matches. Under ``no_tool``, any call fails the row.

``aliases=FILE`` names the strings the tools' own code treats as one value: a JSON object from a
canonical string to the other ways of writing it (``{"Haiti": ["Haitian"], "United Kingdom":
["British", "UK"]}``, as in the bundled ``travel_tools/nationalities.json``). Every string argument,
expected and called, is read through it (after case and spacing are normalised) before the compare,
so a function that takes a nationality "in the user's own words" is scored as its code would read it;
a leading "the" ("the UK") and a typographic apostrophe are read as the table's entry when it has one.
Several tables join with ``+`` (``aliases=nationalities.json+currencies.json``, the bundled example's
two; a path that is itself a file is read whole, "+" and all): they are read as one, and a spelling
that two of them give to different values is an error naming both files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tunery.chat_template import parse_tool_calls
from tunery.errors import InvalidInput
from tunery.evals.base import Evaluator, Row, RowScore, parse_options, text_of

NO_TOOL = "no_tool"


def _text(value: str) -> str:
    return " ".join(value.split()).casefold()


def _alias(text: str, aliases: Mapping[str, str]) -> str:
    """``text``'s canonical form: as it is, or without a leading "the" ("the UK"), with a typographic
    apostrophe read as a plain one ("Côte d’Ivoire"); unchanged when the table does not know it."""
    text = text.replace("\u2019", "'")
    for key in (text, text[4:] if text.startswith("the ") else None):
        if key in aliases:
            return aliases[key]
    return text


def normalise(value: Any, aliases: Mapping[str, str] | None = None) -> Any:
    """A JSON value in the form two equal arguments share (see the module docstring); ``aliases``
    maps a normalised string to its normalised canonical one (:func:`load_aliases`)."""
    if isinstance(value, str):
        text = _text(value)
        return _alias(text, aliases) if aliases else text
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dict):
        return {str(k): normalise(v, aliases) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v, aliases) for v in value]
    return value


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{next(k for k in keys if keys.count(k) > 1)!r} is a key twice")
    return dict(pairs)


def alias_files(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    """The aliases files ``paths`` names: a string joins several with ``+`` (spaces around it are
    read past), unless it is itself a file's path; a :class:`~pathlib.Path` is one file."""
    if isinstance(paths, Path) or (isinstance(paths, str) and Path(paths).is_file()):
        return [Path(paths)]
    parts = [p.strip() for p in paths.split("+")] if isinstance(paths, str) else [str(p) for p in paths]
    if not parts or not all(parts):
        raise InvalidInput(f"evaluator 'tool_calls': aliases= has an empty file name in {paths!r}",
                           param="evaluator", hint="join files with one +, e.g. aliases=names.json+currencies.json")
    return [Path(p) for p in parts]


def load_aliases(paths: str | Path | Sequence[str | Path]) -> dict[str, str]:
    """Read aliases files (:func:`alias_files`; see the module docstring) into {normalised alias:
    normalised canonical}; an alias given to two canonical strings, in one file or across them, is
    an error, since the compare could not be one way."""
    table: dict[str, str] = {}
    named: dict[str, tuple[str, Path]] = {}  # normalised canonical -> as a file writes it, and that file
    for path in alias_files(paths):
        _read_aliases(path, table, named)
    return table


def _read_aliases(path: Path, table: dict[str, str], named: dict[str, tuple[str, Path]]) -> None:
    """Add one aliases file's entries to ``table`` (see :func:`load_aliases`)."""
    where = f"evaluator 'tool_calls': aliases file {str(path)!r}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"{where} does not exist", param="evaluator") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInput(f"{where} cannot be read: {e}", param="evaluator") from None
    try:
        data = json.loads(text, object_pairs_hook=_no_repeats)
    except ValueError as e:
        raise InvalidInput(f"{where} is not valid JSON: {e}", param="evaluator") from None
    shape = 'a JSON object of canonical string -> list of strings, e.g. {"Haiti": ["Haitian"]}'
    if not isinstance(data, dict) or not data:
        raise InvalidInput(f"{where} must be {shape}", param="evaluator")
    for canonical, others in data.items():
        if not canonical.strip() or not isinstance(others, list) or not all(
                isinstance(a, str) and a.strip() for a in others):
            raise InvalidInput(f"{where}: the entry {canonical!r} must be a non-blank name with a list of "
                               f"non-blank strings", param="evaluator", hint=f"the file must be {shape}")
        value = _text(canonical)
        named.setdefault(value, (canonical, path))
        for alias in [canonical, *others]:
            if table.setdefault(_text(alias), value) != value:
                first, there = named[table[_text(alias)]]
                elsewhere = f" (in {str(there)!r})" if there != path else ""
                raise InvalidInput(f"{where}: {alias!r} is given to both {first!r}{elsewhere} and {canonical!r}",
                                   param="evaluator", hint="give each spelling to one entry, in one file")


def _arguments(call: dict[str, Any]) -> Any:
    """A call's arguments parsed (OpenAI's are a JSON string); a string that does not parse is
    returned as it is and so matches no expected object."""
    args = call.get("function", call).get("arguments", {})
    if isinstance(args, str):
        try:
            return json.loads(args)
        except ValueError:
            return args
    return args


def _show(calls: list[tuple[str, Any]]) -> str:
    return "; ".join(f"{n}({json.dumps(a, ensure_ascii=False, sort_keys=True)})" for n, a in calls) or "no call"


class ToolCalls(Evaluator):
    kind = "tool_calls"
    binary = True
    description = ("Tool-call check: passes when the answer calls exactly the expected functions with equal "
                   "arguments (key order, string case and spacing, 100 vs 100.0 ignored), or calls none when the "
                   "row expects no_tool. Reads the row's tool_calls, else <tool_call> blocks in the answer. "
                   "aliases=FILE[+FILE...]: JSON objects of canonical string -> other spellings the tools accept.")
    _has_ref_option = True

    def __init__(self, ref: str = "expect", *, aliases: str | Path | Sequence[str | Path] | None = None,
                 name: str | None = None) -> None:
        files = alias_files(aliases) if aliases else []
        options = [f"ref={ref}"] if ref != "expect" else []
        options += [f"aliases={'+'.join(f.name for f in files)}"] if files else []
        super().__init__(name or (f"{self.kind}:{','.join(options)}" if options else self.kind))
        self.ref = ref
        self.aliases = load_aliases(files) if files else {}

    @classmethod
    def from_spec(cls, options: str) -> ToolCalls:
        positional, kw = parse_options(options, allowed=("ref", "aliases"), evaluator=cls.kind)
        if "aliases" in kw and not kw["aliases"]:
            raise InvalidInput(f"evaluator {cls.kind!r}: aliases= needs a file", param="evaluator",
                               hint='e.g. tool_calls:aliases=names.json, holding {"Haiti": ["Haitian"]}')
        if positional:
            raise InvalidInput(f"evaluator {cls.kind!r} takes only ref=COLUMN and aliases=FILE[+FILE...] (got {options!r})",
                               param="evaluator")
        return cls(ref=kw.get("ref", "expect"), aliases=kw.get("aliases"))

    def _key(self, name: str, args: Any) -> str:
        """One call as a comparable string (calls are compared as a multiset of these)."""
        return json.dumps([name, normalise(args, self.aliases)], sort_keys=True)

    @property
    def required_columns(self) -> tuple[str, ...]:
        return (self.ref,)

    @property
    def hint(self) -> str:
        return "pass = the expected calls with equal arguments, or none where none is needed"

    def expected(self, row: Row) -> list[tuple[str, Any]] | None:
        """The expected calls ([] for no_tool); None when the column is not in either form."""
        value = row.get(self.ref)
        if isinstance(value, str):
            if value.strip() == NO_TOOL:
                return []
            try:
                value = json.loads(value)
            except ValueError:
                return None
        if not isinstance(value, dict) or not isinstance(value.get("tool_calls"), list):
            return None
        calls = value["tool_calls"]
        if not all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in calls):
            return None
        return [(c["name"], c.get("arguments", {})) for c in calls]

    def score_row(self, row: Row) -> RowScore:
        expected = self.expected(row)
        if expected is None:
            return RowScore(None, None, f"column {self.ref!r} is neither \"no_tool\" nor "
                                        '{"tool_calls": [{"name", "arguments"}]}')
        raw = row.get("tool_calls")
        if not isinstance(raw, list):
            _, raw = parse_tool_calls(text_of(row, "answer"))
        got = [(c.get("function", c).get("name", ""), _arguments(c)) for c in raw if isinstance(c, dict)]
        if not expected:
            if got:
                return RowScore(0.0, False, f"calls {_show(got)} where no tool is needed")
            return RowScore(1.0, True, "no call, as expected")
        if not got:
            return RowScore(0.0, False, f"no call; expected {_show(expected)}")
        if sorted(self._key(*c) for c in got) == sorted(self._key(*c) for c in expected):
            return RowScore(1.0, True, f"calls {_show(got)}")
        if len(got) != len(expected):
            what = f"{len(got)} calls, expected {len(expected)}"
        elif sorted(n for n, _ in got) != sorted(n for n, _ in expected):
            what = "wrong function"
        else:
            what = "wrong arguments"
        return RowScore(0.0, False, f"{what}: calls {_show(got)}; expected {_show(expected)}")
