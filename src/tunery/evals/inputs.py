"""Reading what an evaluation needs from files: the question rows (JSONL) and, optionally, the
system message of a chat training file, so models are asked with the prompt they were tuned on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunery.data.text import read_lines
from tunery.errors import InvalidInput, NotFound, json_kind, json_problem

MAX_LISTED = 5


def load_questions(path: Path, question_key: str = "question", *, limit: int | None = None) -> list[dict[str, Any]]:
    """Rows of a JSONL file, each an object with a non-empty string under ``question_key``. Every
    bad line is collected; the error lists the first few with their line numbers. With ``limit``,
    only the first ``limit`` rows (blank lines aside) are read: the lines after them are not asked,
    so they are not checked either."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"data file {path} does not exist", param="data")
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for n, line in read_lines(path, param="data"):  # a line that is not UTF-8 is named
        if limit is not None and len(rows) + len(problems) >= limit:
            break
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as e:  # RecursionError: nested past Python's limit
            problems.append(f"line {n}: not valid JSON: {json_problem(e)}")
            continue
        if not isinstance(row, dict):
            problems.append(f"line {n}: expected a JSON object, got {json_kind(row)}")
        elif not isinstance(row.get(question_key), str) or not row[question_key].strip():
            found = ", ".join(sorted(row)) or "none"
            problems.append(f"line {n}: no text in column {question_key!r} (columns: {found})")
        else:
            rows.append(row)
    if problems:
        more = f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
        raise InvalidInput(f"{path}: " + "; ".join(problems[:MAX_LISTED]) + more, param="data",
                           hint="each line needs a JSON object with the question column "
                                "(choose it with --question-key)")
    if not rows:
        raise InvalidInput(f"{path} holds no questions", param="data")
    return rows


def system_from_chat_file(path: Path) -> str:
    """The first system message found in a chat JSONL file (``{"messages": [...]}`` rows) or a file
    of preference pairs (``{"input": {"messages": [...]}, ...}``)."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"file {path} does not exist", param="system-from")
    for _, line in read_lines(path, param="system-from"):
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(row, dict) and isinstance(row.get("input"), dict):  # a preference pair's prompt
            row = row["input"]
        messages = row.get("messages") if isinstance(row, dict) else None
        for m in messages if isinstance(messages, list) else []:
            if isinstance(m, dict) and m.get("role") == "system" and isinstance(m.get("content"), str):
                return m["content"]
    raise InvalidInput(f"{path} has no system message", param="system-from",
                       hint="pass the system message with --system TEXT instead")
