"""Find and redact personal data in chat training data before it is trained into a model.

Detection is patterns plus checksums, entirely offline: e-mail addresses, phone numbers
(international ``+CC``/``00CC`` and common national formats), payment card numbers (Luhn), IBANs
(country length and mod-97), IPv4/IPv6 addresses, US social security numbers and UK National
Insurance numbers. Each match is replaced by a typed placeholder such as ``[EMAIL]``.

We keep our own patterns rather than depend on a library: presidio needs spaCy models downloaded
at run time, scrubadub is unmaintained, and the checksum validators of python-stdnum are a few
lines each here. Patterns lean towards precision: dates, prices, years, version numbers and ISBNs
must not be redacted, since every false positive damages the training text.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunery.data.pairs import is_pair, pair_messages
from tunery.data.text import BOM
from tunery.home import atomic_open

PLACEHOLDERS = {"EMAIL": "[EMAIL]", "PHONE": "[PHONE]", "CARD": "[CARD]", "IBAN": "[IBAN]", "IP": "[IP]",
                "SSN": "[SSN]", "NI_NUMBER": "[NI_NUMBER]"}


@dataclass(frozen=True, slots=True)
class PiiMatch:
    kind: str  # a key of PLACEHOLDERS
    start: int
    end: int
    text: str

    @property
    def placeholder(self) -> str:
        return PLACEHOLDERS[self.kind]


# -- checksums ---------------------------------------------------------------------------------

def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# IBAN length per country (SWIFT IBAN registry)
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}


def iban_ok(iban: str) -> bool:
    """Country length and the ISO 13616 mod-97 check on a compact, upper-case IBAN."""
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban.isalnum():
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


# -- patterns ----------------------------------------------------------------------------------

_EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+"
                    r"[A-Za-z]{2,24}(?![\w-])")
# a country code, then the rest in groups of digits that the IBAN length check trims to size
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}")
# 13-19 digits in groups, with one consistent separator (or none)
_CARD = re.compile(r"(?<![\w.,+-])\d{4}(?P<sep>[ -]?)\d{2,6}(?:(?P=sep)\d{2,6}){1,3}(?![\w-]|[.,]\d)")
# the area (000, 666, 9xx), group (00) and serial (0000) that the SSA never issues are excluded
_SSN = re.compile(r"(?<![\w.,+-])(?!000|666|9)\d{3}(?P<sep>[ -])(?!00)\d{2}(?P=sep)(?!0000)\d{4}(?![\w-]|[.,]\d)")
# first letter not D F I Q U V; second not D F I O Q U V; prefixes BG GB KN NK NT TN ZZ are not issued
_NI = re.compile(r"\b(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")
_IPV4 = re.compile(r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
                   r"(?![\w]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?"
                   r"(?![\w:])")
# +CC or 00CC, an optional "(0)" trunk prefix, then groups of digits (some in parentheses)
_PHONE_INTL = re.compile(r"(?<![\w+])(?:\+|\b00)[1-9]\d{0,2}(?:[ .-]?\(0\))?(?:[ .-]?\(?\d{1,5}\)?){1,6}"
                         r"(?![\w-]|[.,]\d)")
# North American: (212) 555-0123, 212-555-0123, 212.555.0123, 212 555 0123, optionally after "1-"
_PHONE_NANP = re.compile(r"(?<![\w+.,/-])(?:1[ .-]?)?(?:\([2-9]\d{2}\) ?|[2-9]\d{2}(?P<sep>[ .-]))"
                         r"[2-9]\d{2}(?(sep)(?P=sep)|[ .-])\d{4}(?![\w-]|[.,/]\d)")
# national numbers with a trunk 0: 020 7946 0958, 07700 900123, 030/1234567, 01 23 45 67 89, (0161) 496 0000
_PHONE_TRUNK = re.compile(r"(?<![\w+.,/-])(?:\(0\d{1,4}\) ?|0[1-9]\d{0,3}[ /.-]?)\d{2,4}(?:[ .-]?\d{2,4}){0,3}"
                          r"(?![\w-]|[.,/]\d)")
# words before a number that say it is not personal data
_NOT_PII_CONTEXT = re.compile(r"(?i)\b(?:isbn(?:-1[03])?|issn|version|ver|release|build|v)\.?:?\s*$")


def _digits(s: str) -> str:
    return "".join(ch for ch in s if ch.isdigit())


def _emails(text: str) -> Iterator[PiiMatch]:
    for m in _EMAIL.finditer(text):
        yield PiiMatch("EMAIL", m.start(), m.end(), m.group())


def _ibans(text: str) -> Iterator[PiiMatch]:
    for m in _IBAN.finditer(text):
        want = IBAN_LENGTHS.get(m.group()[:2])
        if want is None:
            continue
        # walk the match to where its ``want``-th significant character ends
        count, end = 0, m.start()
        for end, ch in enumerate(text[m.start():m.end()], m.start() + 1):  # noqa: B007
            count += ch != " "
            if count == want:
                break
        if count != want or (end < len(text) and text[end].isalnum()):
            continue
        if iban_ok(text[m.start():end].replace(" ", "")):
            yield PiiMatch("IBAN", m.start(), end, text[m.start():end])


# how cards are printed: 4-4-4-4 (most), 4-4-4-4-3 (19 digits), 4-6-5 (Amex), 4-6-4 (Diners)
_CARD_LAYOUTS = {(4, 4, 4, 4), (4, 4, 4, 4, 3), (4, 6, 5), (4, 6, 4)}


def _cards(text: str) -> Iterator[PiiMatch]:
    for m in _CARD.finditer(text):
        digits = _digits(m.group())
        # issuer prefixes start with 2-6 (Mastercard 2-series, Amex/Diners/JCB 3, Visa 4, 5, 6)
        groups = re.split(r"[ -]", m.group())
        if len(groups) > 1 and tuple(len(g) for g in groups) not in _CARD_LAYOUTS:
            continue
        if len(groups) > 1 and all(len(g) == 4 and 1900 <= int(g) <= 2100 for g in groups):
            continue  # a list of years, whatever its checksum
        if 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_ok(digits):
            yield PiiMatch("CARD", m.start(), m.end(), m.group())


def _simple(kind: str, pattern: re.Pattern[str], check: Callable[[str], bool] | None = None
            ) -> Callable[[str], Iterator[PiiMatch]]:
    def find(text: str) -> Iterator[PiiMatch]:
        for m in pattern.finditer(text):
            if check is None or check(m.group()):
                yield PiiMatch(kind, m.start(), m.end(), m.group())
    return find


def _ipv6_ok(s: str) -> bool:
    try:
        ipaddress.IPv6Address(s)
    except ValueError:
        return False
    # "abc::def" or "dead::beef" are more often code than addresses: ask for a digit and two groups
    return any(ch.isdigit() for ch in s) and sum(1 for g in s.split(":") if g) >= 2


def _phone_ok(kind: str) -> Callable[[str], bool]:
    def ok(s: str) -> bool:
        digits = _digits(s.replace("(0)", ""))
        if kind == "intl":
            # "00" is an international prefix, not part of the E.164 number (at most 15 digits)
            digits = digits[2:] if s.startswith("00") else digits
            return 8 <= len(digits) <= 15
        if kind == "trunk":
            # 9 digits at least: dates (01.02.2023) have 8 and fewer; one kind of separator, so a
            # date followed by a time or a count ("05.03.2024 10") is not read as one number
            separators = {ch for ch in s if not ch.isdigit() and ch not in "()"}
            return 9 <= len(digits) <= 12 and len(set(digits)) > 2 and len(separators) <= 1
        return True
    return ok


_FINDERS: list[tuple[str, Callable[[str], Iterator[PiiMatch]]]] = [
    ("EMAIL", _emails),
    ("IBAN", _ibans),
    ("CARD", _cards),
    ("SSN", _simple("SSN", _SSN)),
    ("NI_NUMBER", _simple("NI_NUMBER", _NI)),
    ("PHONE", _simple("PHONE", _PHONE_INTL, _phone_ok("intl"))),
    ("PHONE", _simple("PHONE", _PHONE_NANP)),
    ("PHONE", _simple("PHONE", _PHONE_TRUNK, _phone_ok("trunk"))),
    ("IP", _simple("IP", _IPV4)),
    ("IP", _simple("IP", _IPV6, _ipv6_ok)),
]
_DIGIT = re.compile(r"\d")
_PRIORITY = {kind: i for i, kind in enumerate(dict.fromkeys(k for k, _ in _FINDERS))}


def find_pii(text: str) -> list[PiiMatch]:
    """All personal data found in ``text``, in order, without overlaps (the longer match wins, then
    the kind listed first in PLACEHOLDERS' order of precision)."""
    # every kind but e-mail needs a digit, and e-mail needs an "@": most chat text skips most patterns
    has_digit, has_at = _DIGIT.search(text) is not None, "@" in text
    finders = [f for kind, f in _FINDERS if (has_at if kind == "EMAIL" else has_digit)]
    found = [m for finder in finders for m in finder(text)
             if m.kind == "EMAIL" or not _NOT_PII_CONTEXT.search(text[max(0, m.start - 12):m.start])]
    found.sort(key=lambda m: (m.start, -(m.end - m.start), _PRIORITY[m.kind]))
    out: list[PiiMatch] = []
    for m in found:
        if out and m.start < out[-1].end:
            continue
        out.append(m)
    return out


def scrub_text(text: str) -> tuple[str, list[PiiMatch]]:
    """``text`` with every match replaced by its placeholder, and the matches."""
    matches = find_pii(text)
    if not matches:
        return text, []
    parts, pos = [], 0
    for m in matches:
        parts += [text[pos:m.start], m.placeholder]
        pos = m.end
    parts.append(text[pos:])
    return "".join(parts), matches


# -- files -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Finding:
    line: int
    field: str  # messages[2].content, or "text" for a line that is not a chat example
    match: PiiMatch

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "kind": self.match.kind, "text": self.match.text}


@dataclass
class ScrubReport:
    """What was found in a file (and, for :func:`scrub_file`, where the scrubbed copy went). A file
    is read line by line; with ``max_findings`` only that many findings are kept, all counted."""

    path: Path
    n_lines: int = 0
    findings: list[Finding] = field(default_factory=list)
    plain_text_lines: list[int] = field(default_factory=list)
    """Lines that are not chat examples: scanned (and scrubbed) as plain text."""
    output: Path | None = None
    max_findings: int | None = None
    n_findings: int = 0
    kinds: Counter = field(default_factory=Counter, repr=False)
    pii_lines: list[int] = field(default_factory=list, repr=False)
    not_scanned: str | None = None
    """Why the file's text could not be scanned (a UTF-16 file), when it could not."""

    def add(self, line: int, fld: str, matches: list[PiiMatch]) -> None:
        if not matches:
            return
        room = len(matches) if self.max_findings is None else max(0, self.max_findings - len(self.findings))
        self.findings += [Finding(line, fld, m) for m in matches[:room]]
        self.n_findings += len(matches)
        self.kinds.update(m.kind for m in matches)
        if not self.pii_lines or self.pii_lines[-1] != line:
            self.pii_lines.append(line)

    @property
    def found(self) -> bool:
        return self.n_findings > 0

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.kinds)

    @property
    def lines_with_pii(self) -> list[int]:
        return list(self.pii_lines)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "output": str(self.output) if self.output else None,
                "n_lines": self.n_lines, "counts": self.counts, "lines_with_pii": self.lines_with_pii,
                "plain_text_lines": self.plain_text_lines, "findings": [f.to_dict() for f in self.findings]}


# a JSON string literal or number, and what follows a key's literal: scanned left to right over a
# valid JSON text, a quote outside a string can only open the next string, and digits outside one
# can only be a number
_JSON_SCALAR = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?')
_KEY_AFTER = re.compile(r"\s*:")


def _scrub_json_values(doc: str) -> tuple[str, list[PiiMatch]]:
    """``doc``, a valid JSON text, with each string value and number scrubbed where it stands (a card
    number is as often a number as a string: one found becomes its placeholder, a string): keys,
    other numbers, escapes and layout stay as written (re-serialising would turn 19.90 into 19.9
    and 1e400 into the invalid Infinity in text the model is trained on)."""
    parts: list[str] = []
    found: list[PiiMatch] = []
    pos = 0
    for m in _JSON_SCALAR.finditer(doc):
        literal = m.group()
        if literal[0] == '"' and _KEY_AFTER.match(doc, m.end()):
            continue  # a key: part of the document's shape, kept
        new, matches = scrub_text(json.loads(literal) if literal[0] == '"' else literal)
        if matches:
            parts += [doc[pos:m.start()], json.dumps(new, ensure_ascii=False)]
            pos = m.end()
            found += matches
    return "".join(parts) + doc[pos:], found


def _scrub_json_text(holder: dict, key: str, fld: str, line: int, report: ScrubReport) -> bool:
    """Scrub ``holder[key]``, a string that may hold a JSON document (tool-call arguments, a tool's
    result): the document's string values and numbers one by one, so it stays valid JSON; other
    text as text."""
    text = holder[key]
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        doc = None
    new, matches = _scrub_json_values(text) if isinstance(doc, dict | list) else scrub_text(text)
    report.add(line, fld, matches)
    if matches:
        holder[key] = new
    return bool(matches)


def _scrub_messages(messages: list, line: int, report: ScrubReport) -> bool:
    """Scrub message contents, tool calls' arguments and tool results in place; True when
    something changed."""
    changed = False
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            continue
        calls = m.get("tool_calls")
        for j, c in enumerate(calls if isinstance(calls, list) else []):
            fn = c.get("function") if isinstance(c, dict) else None
            if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                fld = f"messages[{i}].tool_calls[{j}].function.arguments"
                changed = _scrub_json_text(fn, "arguments", fld, line, report) or changed
        content = m.get("content")
        targets: list[tuple[str, dict, str]] = []
        if isinstance(content, str) and m.get("role") == "tool":
            changed = _scrub_json_text(m, "content", f"messages[{i}].content", line, report) or changed
        elif isinstance(content, str):
            targets.append((f"messages[{i}].content", m, "content"))
        elif isinstance(content, list):
            targets += [(f"messages[{i}].content[{j}].text", part, "text") for j, part in enumerate(content)
                        if isinstance(part, dict) and isinstance(part.get("text"), str)]
        for fld, holder, key in targets:
            new, matches = scrub_text(holder[key])
            report.add(line, fld, matches)
            if matches:
                holder[key] = new
                changed = True
    return changed


def _dump(obj: Any) -> bytes:
    """A scrubbed example as one JSON line. Undecodable bytes in it go back as they were; a lone
    surrogate (a ``\\ud800`` escape without its pair) has no UTF-8 form, so that line is written
    with ASCII escapes, which keep it as the file had it."""
    try:
        return json.dumps(obj, ensure_ascii=False).encode("utf-8", errors="surrogateescape")
    except UnicodeEncodeError:
        return json.dumps(obj).encode("ascii")


class _Within:
    """``report`` for a message list that sits at ``field`` of a line rather than at ``messages``."""

    def __init__(self, report: ScrubReport, field: str) -> None:
        self.report, self.field = report, field

    def add(self, line: int, fld: str, matches: list[PiiMatch]) -> None:
        self.report.add(line, self.field + fld.removeprefix("messages"), matches)


def scrub_line(lineno: int, raw: bytes, report: ScrubReport, *, rewrite: bool = True) -> bytes:
    """Scan one line (its bytes without the ``\\n``) and return it scrubbed (unchanged, byte for byte,
    without findings or when not ``rewrite``). Never fails on the bytes: a line that is not UTF-8 is
    still scanned, and what it holds besides the findings is kept."""
    body = raw.removeprefix(BOM) if lineno == 1 else raw
    text = body.decode("utf-8", errors="surrogateescape")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        obj = None
    if isinstance(obj, dict) and isinstance(obj.get("messages"), list):
        if _scrub_messages(obj["messages"], lineno, report) and rewrite:
            raw = _dump(obj)
    elif is_pair(obj):  # a preference pair (DPO): its prompt and both outputs
        changed = [_scrub_messages(messages, lineno, _Within(report, fld)) for fld, messages in pair_messages(obj)]
        if any(changed) and rewrite:
            raw = _dump(obj)
    elif text.strip():
        # not a chat example: still never let personal data through unscanned
        report.plain_text_lines.append(lineno)
        new, matches = scrub_text(text)
        report.add(lineno, "text", matches)
        if matches and rewrite:
            raw = new.encode("utf-8", errors="surrogateescape")
    return raw


def check_file(path: str | Path, *, max_findings: int | None = None) -> ScrubReport:
    """Scan a chat JSONL file's message contents for personal data, line by line; writes nothing. A
    UTF-16 file, whose text no pattern would match, is an InvalidInput."""
    from tunery.data.text import file_lines, open_data, refuse_utf16

    report = ScrubReport(Path(path), max_findings=max_findings)
    with open_data(path) as f:
        for lineno, raw in enumerate(file_lines(f, None), 1):
            if lineno == 1:
                refuse_utf16(path, raw)
            scrub_line(lineno, raw, report, rewrite=False)
            report.n_lines = lineno
    return report


def scrub_file(src: str | Path, dst: str | Path, *, force: bool = False) -> ScrubReport:
    """Write ``dst``: ``src`` with personal data in message contents replaced by placeholders. Lines
    without findings are copied byte for byte; the file is read and written line by line, and the
    output appears whole or not at all (and not at all for a UTF-16 file: see :func:`check_file`).
    A ``dst`` that exists is a Conflict unless ``force``."""
    from tunery.data.text import open_data, refuse_existing, refuse_utf16

    refuse_existing([Path(dst)], force=force, hint="choose another -o")
    report = ScrubReport(Path(src), output=Path(dst))
    with open_data(src) as f, atomic_open(Path(dst)) as out:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1:
                refuse_utf16(src, raw)
            body = raw.removesuffix(b"\n").removesuffix(b"\r")
            # the line's own ending (CRLF too), so a rewritten line ends as the lines copied around it do
            out.write(scrub_line(lineno, body, report) + raw[len(body):])
            report.n_lines = lineno
    return report
