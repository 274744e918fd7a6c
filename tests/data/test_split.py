"""Deterministic train/validation split."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from chatlines import good_lines, jsonl

from tunery.data import default_outputs, split_file, split_lines
from tunery.errors import Conflict, InvalidInput


def _src(tmp_path: Path, n: int = 20) -> Path:
    path = tmp_path / "trips.jsonl"
    path.write_bytes(jsonl(good_lines(n)))
    return path


def test_same_seed_same_split_and_nothing_lost(tmp_path: Path):
    src = _src(tmp_path)
    a = split_file(src, validation_fraction=0.25, seed=7)
    first = (a.train_path.read_bytes(), a.valid_path.read_bytes())
    b = split_file(src, validation_fraction=0.25, seed=7, force=True)
    assert (b.train_path.read_bytes(), b.valid_path.read_bytes()) == first
    assert (a.n_train, a.n_valid) == (15, 5)
    train, valid = (p.read_bytes().splitlines() for p in (a.train_path, a.valid_path))
    original = src.read_bytes().splitlines()
    assert sorted(train + valid) == sorted(original)
    assert b"\r" not in first[0] + first[1] and not first[0].startswith(b"\xef\xbb\xbf")  # LF stays LF
    assert train == [x for x in original if x in train]  # each side keeps the input's order
    assert a.train_path == tmp_path / "trips.train.jsonl" and a.valid_path == tmp_path / "trips.valid.jsonl"


def test_different_seeds_differ():
    lines = [str(i).encode() for i in range(50)]
    splits = {tuple(split_lines(lines, validation_fraction=0.2, seed=s)[1]) for s in range(5)}
    assert len(splits) > 1


@pytest.mark.parametrize(("n", "fraction", "expected"), [(2, 0.01, (1, 1)), (2, 0.99, (1, 1)), (10, 0.1, (9, 1)),
                                                          (3, 0.5, (1, 2))])
def test_each_side_gets_at_least_one(n, fraction, expected):
    train, valid = split_lines([str(i).encode() for i in range(n)], validation_fraction=fraction, seed=0)
    assert (len(train), len(valid)) == expected


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, math.nan])
def test_fraction_outside_zero_one_is_refused(tmp_path: Path, fraction):
    with pytest.raises(InvalidInput, match="between 0 and 1") as exc:
        split_file(_src(tmp_path), validation_fraction=fraction, seed=0)
    assert exc.value.param == "validation_fraction"
    # named first, even where the outputs exist: "already exists" would send the user to --force in vain
    split_file(_src(tmp_path), validation_fraction=0.5, seed=0)
    with pytest.raises(InvalidInput, match="between 0 and 1"):
        split_file(_src(tmp_path), validation_fraction=fraction, seed=0)


def test_too_few_examples_and_blank_lines(tmp_path: Path):
    one = tmp_path / "one.jsonl"
    one.write_bytes(b"\xef\xbb\xbf" + jsonl(good_lines(1)) + b"\n\n")
    with pytest.raises(InvalidInput, match="cannot split 1 example"):
        split_file(one, validation_fraction=0.5, seed=0)


def test_refuses_to_overwrite_the_input(tmp_path: Path):
    src = _src(tmp_path)
    with pytest.raises(InvalidInput, match="is the input file"):
        split_file(src, validation_fraction=0.5, seed=0, out_train=src, out_valid=tmp_path / "v.jsonl")
    assert src.read_bytes() == jsonl(good_lines(20))


def test_default_outputs_and_prefix(tmp_path: Path):
    assert default_outputs(tmp_path / "a.jsonl") == (tmp_path / "a.train.jsonl", tmp_path / "a.valid.jsonl")
    assert default_outputs(tmp_path / "a.txt", tmp_path / "out/x") == (tmp_path / "out/x.train.jsonl",
                                                                        tmp_path / "out/x.valid.jsonl")


def test_existing_outputs_are_kept_unless_forced(tmp_path: Path):
    src = _src(tmp_path)
    (tmp_path / "trips.valid.jsonl").write_text("mine\n")
    with pytest.raises(Conflict, match="trips.valid.jsonl already exists") as exc:
        split_file(src, validation_fraction=0.5, seed=0)
    assert "--force" in str(exc.value)
    assert (tmp_path / "trips.valid.jsonl").read_text() == "mine\n" and not (tmp_path / "trips.train.jsonl").exists()
    result = split_file(src, validation_fraction=0.5, seed=0, force=True)
    assert result.n_valid == 10 and len(result.valid_path.read_bytes().splitlines()) == 10


@pytest.mark.parametrize("prefix", ["", " ", "out/", ".", "..", "../d/", "out/.", "out/.."])
def test_a_prefix_must_end_in_a_name(tmp_path: Path, prefix):
    with pytest.raises(InvalidInput, match="the output prefix (is empty|.* ends in a folder, not a file name)"):
        default_outputs(tmp_path / "a.jsonl", prefix)


def test_lines_that_are_not_json_objects_are_refused(tmp_path: Path):
    """A pretty-printed document split into lines would make two files of JSON fragments."""
    doc = tmp_path / "array.jsonl"
    doc.write_text(json.dumps([json.loads(x) for x in good_lines(20)], indent=1))
    with pytest.raises(InvalidInput, match=r"array.jsonl, line 1: not valid JSON: Expecting value") as exc:
        split_file(doc, validation_fraction=0.5, seed=0)
    assert "the file is one JSON document (a list), not JSON Lines" in str(exc.value)
    listed = tmp_path / "listed.jsonl"
    listed.write_bytes(jsonl([*good_lines(3), "[1, 2]", *good_lines(3)]))
    with pytest.raises(InvalidInput, match="listed.jsonl, line 4: expected a JSON object, got a list"):
        split_file(listed, validation_fraction=0.5, seed=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["array.jsonl", "listed.jsonl"]


def test_an_output_that_cannot_be_written_leaves_the_other_as_it_was(tmp_path: Path):
    """Once the training file was replaced before the validation file failed: a new training side
    beside an old validation side, which may hold the same examples."""
    from tunery.home import CannotWrite

    src = _src(tmp_path)
    (tmp_path / "trips.train.jsonl").write_text("mine\n")
    (tmp_path / "trips.valid.jsonl").mkdir()
    with pytest.raises(CannotWrite, match="trips.valid.jsonl: it is a folder"):
        split_file(src, validation_fraction=0.5, seed=0, force=True)
    assert (tmp_path / "trips.train.jsonl").read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trips.jsonl", "trips.train.jsonl", "trips.valid.jsonl"]


def test_a_windows_file_keeps_its_line_endings_and_byte_order_mark(tmp_path: Path):
    """A CRLF file with a BOM came out as LF without it; each output is now written as the input."""
    src = tmp_path / "win.jsonl"
    lines = jsonl(good_lines(20)).decode().splitlines()
    src.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    r = split_file(src, validation_fraction=0.25, seed=3)
    for out in (r.train_path, r.valid_path):
        data = out.read_bytes()
        assert data.startswith(b"\xef\xbb\xbf") and data.endswith(b"\r\n") and data.count(b"\n") == data.count(b"\r\n")
        assert set(data.removeprefix(b"\xef\xbb\xbf").decode().splitlines()) <= set(lines)
