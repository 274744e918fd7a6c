"""A batch run's lines: the data file read as rows, and each row (joined with the parent run's
line, when grading a previous run) mapped to flow inputs through the column mapping.

Without a mapping entry, an input takes the data column of the same name, else its default, as
in Prompt flow. A mapping that names a column (or a parent run's output) no line has fails the
whole run up front; a value missing from one line fails only that line."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunery.data.text import check_utf8, read_lines
from tunery.errors import InvalidInput, NotFound, json_problem
from tunery.flows.refs import MISSING, Reference, lookup, parse_mapping_reference
from tunery.flows.spec import Flow


@dataclass
class PreparedLine:
    line_number: int
    inputs: dict[str, Any]
    error: str | None = None


def load_data(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSONL (or CSV/TSV) file; every problem names the file and line."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise InvalidInput(f"data {p} is a folder", param="data", hint="give a .jsonl, .csv or .tsv file")
    if not p.is_file():
        raise NotFound(f"data file {p} not found", param="data")
    if p.suffix.lower() in (".csv", ".tsv"):
        return _table(p)
    rows = []
    for i, line in read_lines(p, param="data"):  # a line that is not UTF-8 is named
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as e:  # a number past Python's digit limit is a ValueError
            raise InvalidInput(f"{p.name} line {i}: not valid JSON ({json_problem(e)})", param="data") from None
        if not isinstance(row, dict):
            raise InvalidInput(f"{p.name} line {i}: each line must be a JSON object", param="data")
        rows.append(row)
    if not rows:
        raise InvalidInput(f"{p.name} has no lines", param="data")
    return rows


def _table(p: Path) -> list[dict[str, Any]]:
    """Rows of a CSV or TSV file with a header line; a row with more fields than the header is named."""
    rows = []
    try:
        with p.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f, delimiter="\t" if p.suffix.lower() == ".tsv" else ",")
            header = reader.fieldnames or []  # read here: the reader reads it lazily, from the open file
            for row in reader:
                if None in row:  # the fields past the header's, which would have no column name
                    raise InvalidInput(f"{p.name} line {reader.line_num}: {len(header) + len(row[None])} fields, "
                                       f"but the header names {len(header)}", param="data",
                                       hint="quote a value that holds the delimiter")
                rows.append(dict(row))
    except UnicodeDecodeError:
        check_utf8(p, param="data")  # names the line and byte
        raise
    except csv.Error as e:
        raise InvalidInput(f"{p.name}: not valid CSV ({e})", param="data") from None
    if not rows:
        raise InvalidInput(f"{p.name} has no lines" + (" under its header" if header else ""), param="data")
    return rows


def parse_column_mapping(mapping: dict[str, Any]) -> dict[str, Any]:
    """Mapping values parsed into references (or kept as literal constants)."""
    out = {}
    for key, value in mapping.items():
        try:
            ref = parse_mapping_reference(value)
        except ValueError as e:
            raise InvalidInput(f"column mapping {key}: {e}", param="column_mapping") from None
        out[str(key)] = ref if ref is not None else value
    return out


def map_lines(flow: Flow, data: list[dict[str, Any]] | None, mapping: dict[str, Any], *,
              parent: list[dict[str, Any]] | None = None, data_name: str = "data") -> tuple[list[PreparedLine], list[str]]:
    """Lines to run and warnings. ``parent`` holds the parent run's line records (line_number,
    status, inputs, outputs); its failed lines are left out, as Prompt flow does."""
    refs = parse_column_mapping(mapping)
    warnings = [f"column mapping {k!r} is not an input of the flow; ignored"
                for k in refs if k not in flow.inputs]
    for key, ref in refs.items():
        if isinstance(ref, Reference) and ref.source == "run" and parent is None:
            raise InvalidInput(f"column mapping {key}={ref} needs a parent run", param="column_mapping",
                               hint="name it with --run RUN")
        if isinstance(ref, Reference) and ref.source == "data":
            if data is None:
                raise InvalidInput(f"column mapping {key}={ref} needs --data", param="column_mapping")
            if all(lookup(row, ref.path) is MISSING for row in data):
                columns = sorted({str(c) for row in data for c in row})
                raise InvalidInput(f"column mapping {key}={ref}: no line of {data_name} has "
                                   f"{'.'.join(ref.path)!r}", param="column_mapping",
                                   hint="its columns: " + ", ".join(columns[:20]))
    if parent is not None:
        pairs = [(int(p["line_number"]), p) for p in sorted(parent, key=lambda r: r["line_number"])
                 if p.get("status") == "Completed"]
        if not pairs:
            raise InvalidInput("the parent run has no successful line to grade", param="run")
        for key, ref in refs.items():  # as for a data column: a name no line has fails the run up front
            if isinstance(ref, Reference) and ref.source == "run" and all(
                    lookup(p.get(ref.section) or {}, ref.path) is MISSING for _, p in pairs):
                names = sorted({str(k) for _, p in pairs for k in p.get(ref.section) or {}})
                raise InvalidInput(f"column mapping {key}={ref}: no line of the parent run has {ref.section} "
                                   f"{'.'.join(ref.path)!r}", param="column_mapping",
                                   hint=f"its {ref.section}: " + (", ".join(names[:20]) or "none"))
    else:
        pairs = [(i, None) for i in range(len(data or []))]
    lines = []
    for number, par in pairs:
        row = None
        if data is not None:
            row = data[number] if number < len(data) else None
            if row is None:
                lines.append(PreparedLine(number, {}, f"{data_name} has no line {number + 1} to join with the "
                                          "parent run's line"))
                continue
        lines.append(_one_line(flow, number, row or {}, par, refs))
    return lines, warnings


def _one_line(flow: Flow, number: int, row: dict[str, Any], parent: dict[str, Any] | None,
              refs: dict[str, Any]) -> PreparedLine:
    inputs: dict[str, Any] = {}
    for name, spec in flow.inputs.items():
        if name in refs:
            ref = refs[name]
            if not isinstance(ref, Reference):
                inputs[name] = ref
                continue
            if ref.source == "data":
                value = lookup(row, ref.path)
            else:
                value = lookup((parent or {}).get(ref.section) or {}, ref.path)
            if value is MISSING:
                where = "this data line" if ref.source == "data" else f"the parent run's {ref.section}"
                return PreparedLine(number, inputs, f"input {name!r}: {ref} has no value in {where}")
            inputs[name] = value
        elif name in row:
            inputs[name] = row[name]
        elif not spec.has_default:
            return PreparedLine(number, inputs, f"input {name!r} has no value: the data has no column {name!r} "
                                f"and the input no default (map one with --column-mapping {name}='${{data.COL}}')")
    return PreparedLine(number, inputs)
