"""Split a chat JSONL file into a training and a validation file, reproducibly: the same seed and
fraction always put the same lines on the same side, whatever machine runs it."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunery.errors import InvalidInput
from tunery.home import atomic_write_bytes


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
    """``<stem>.train.jsonl`` and ``<stem>.valid.jsonl``, beside ``src`` unless a prefix is given."""
    src = Path(src)
    base = str(prefix) if prefix is not None else str(src.with_suffix("") if src.suffix == ".jsonl" else src)
    return Path(base + ".train.jsonl"), Path(base + ".valid.jsonl")


def split_lines(lines: list[bytes], *, validation_fraction: float, seed: int) -> tuple[list[bytes], list[bytes]]:
    """The (train, valid) lines, each side in the input's order. Each side gets at least one line."""
    if not 0 < validation_fraction < 1:
        raise InvalidInput(f"validation fraction must be between 0 and 1 (exclusive), not {validation_fraction}",
                           param="validation_fraction", hint="e.g. 0.1 keeps one example in ten for validation")
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
               out_valid: str | Path | None = None) -> SplitResult:
    """Split ``src`` line by line (blank lines dropped, lines kept byte for byte) into two files. A line
    that is not UTF-8 is an InvalidInput that names it."""
    from tunery.data.text import read_lines

    src = Path(src)
    default_train, default_valid = default_outputs(src)
    train_path, valid_path = Path(out_train or default_train), Path(out_valid or default_valid)
    for out in (train_path, valid_path):
        if out.exists() and src.exists() and out.resolve() == src.resolve():
            raise InvalidInput(f"output {out} is the input file", param="output", hint="choose another prefix")
    if train_path.resolve() == valid_path.resolve():
        raise InvalidInput("the training and validation outputs are the same file", param="output")
    # every line must be UTF-8 text (a line that is not is named); each goes out as it came
    lines = [raw for raw in (text.encode("utf-8") for _, text in read_lines(src)) if raw.strip()]
    train, valid = split_lines(lines, validation_fraction=validation_fraction, seed=seed)
    atomic_write_bytes(train_path, b"\n".join(train) + b"\n")
    atomic_write_bytes(valid_path, b"\n".join(valid) + b"\n")
    return SplitResult(train_path, valid_path, len(train), len(valid))
