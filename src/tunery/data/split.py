"""Split a chat JSONL file into a training and a validation file, reproducibly: the same seed and
fraction always put the same lines on the same side, whatever machine runs it. Outputs that exist
are replaced only when asked (``force``): a split never overwrites a file by surprise."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunery.errors import InvalidInput, json_kind
from tunery.home import atomic_open


@dataclass(frozen=True, slots=True)
class SplitResult:
    train_path: Path
    valid_path: Path
    n_train: int
    n_valid: int

    def to_dict(self) -> dict[str, Any]:
        return {"train_path": str(self.train_path), "valid_path": str(self.valid_path),
                "n_train": self.n_train, "n_valid": self.n_valid}


def default_outputs(src: str | Path, prefix: str | Path | None = None) -> tuple[Path, Path]:
    """``<stem>.train.jsonl`` and ``<stem>.valid.jsonl``, beside ``src`` unless a prefix is given. A
    prefix ends in a name: an empty one or a folder (``out/``) would make hidden files named only
    ``.train.jsonl``, and is an InvalidInput."""
    src = Path(src)
    stem = src.with_suffix("") if src.suffix == ".jsonl" else src
    if prefix is not None:
        text = str(prefix)
        last = text.replace(os.sep, "/").rsplit("/", 1)[-1]  # as written: Path("out/.").name is "out"
        if not text.strip() or last in ("", ".", ".."):
            example = Path(text if text.strip() else ".", stem.name)
            what = "is empty" if not text.strip() else f"{text!r} ends in a folder, not a file name"
            raise InvalidInput(f"the output prefix {what}", param="output",
                               hint=f"end it in a name: -o {example} writes {example}.train.jsonl and "
                                    f"{example}.valid.jsonl")
    base = str(prefix) if prefix is not None else str(stem)
    return Path(base + ".train.jsonl"), Path(base + ".valid.jsonl")


def _check_fraction(validation_fraction: float) -> None:
    if not 0 < validation_fraction < 1:
        raise InvalidInput(f"validation fraction must be between 0 and 1 (exclusive), not {validation_fraction}",
                           param="validation_fraction", hint="e.g. 0.1 keeps one example in ten for validation")


def split_lines(lines: list[bytes], *, validation_fraction: float, seed: int) -> tuple[list[bytes], list[bytes]]:
    """The (train, valid) lines, each side in the input's order. Each side gets at least one line."""
    _check_fraction(validation_fraction)
    n = len(lines)
    if n < 2:
        raise InvalidInput(f"cannot split {n} example{'' if n == 1 else 's'}: each side needs at least one",
                           param="file")
    n_valid = min(max(round(n * validation_fraction), 1), n - 1)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    valid = set(order[:n_valid])
    return ([line for i, line in enumerate(lines) if i not in valid],
            [line for i, line in enumerate(lines) if i in valid])


def split_file(src: str | Path, *, validation_fraction: float, seed: int, out_train: str | Path | None = None,
               out_valid: str | Path | None = None, force: bool = False) -> SplitResult:
    """Split ``src`` line by line (blank lines dropped, lines kept byte for byte, and the file's
    line ending and byte-order mark with them) into two files. A line that is not UTF-8, or not a
    JSON object (a pretty-printed document), is an InvalidInput that names it; an output that
    exists is a Conflict unless ``force``."""
    from tunery.data.issues import parse_json
    from tunery.data.text import BOM, raw_lines, refuse_existing, small_file
    from tunery.data.validate import _whole_document_hint

    _check_fraction(validation_fraction)  # before "already exists": --force would not have helped
    src = Path(src)
    default_train, default_valid = default_outputs(src)
    train_path, valid_path = Path(out_train or default_train), Path(out_valid or default_valid)
    for out in (train_path, valid_path):
        if out.exists() and src.exists() and out.resolve() == src.resolve():
            raise InvalidInput(f"output {out} is the input file", param="output", hint="choose another prefix")
    if train_path.resolve() == valid_path.resolve():
        raise InvalidInput("the training and validation outputs are the same file", param="output")
    refuse_existing([train_path, valid_path], force=force, hint="choose another -o prefix")
    # every line must be UTF-8 text holding a JSON object (the first that is not is named); each
    # goes out as it came
    lines: list[bytes] = []
    first = b""  # the file's first line as read: its byte-order mark and line ending are the outputs'
    for n, text, raw in raw_lines(src):
        first = first or raw
        if not text.strip():
            continue
        obj, problem = parse_json(text)
        if problem is not None or not isinstance(obj, dict):
            what = f"not valid JSON: {problem}" if problem is not None else f"expected a JSON object, got {json_kind(obj)}"
            hint = (_whole_document_hint(small_file(src)) if not lines else None) or \
                "split takes JSON Lines, one example per line; `tunery data validate` lists every problem"
            raise InvalidInput(f"{src}, line {n}: {what}", param="file", hint=hint)
        lines.append(text.encode("utf-8"))
    train, valid = split_lines(lines, validation_fraction=validation_fraction, seed=seed)
    start, end = (BOM if first.startswith(BOM) else b""), (b"\r\n" if first.endswith(b"\r") else b"\n")
    # both written before either is renamed into place: an output that cannot be written leaves the
    # other as it was, not half of a new split beside half of an old one
    with atomic_open(train_path) as t, atomic_open(valid_path) as v:
        t.write(start + end.join(train) + end)
        v.write(start + end.join(valid) + end)
    return SplitResult(train_path, valid_path, len(train), len(valid))
