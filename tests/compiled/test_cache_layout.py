"""A compiled copy is keyed by the layout of its LoRA inputs too: after a change of layout, a copy
of the old one is neither found nor served (its adapters would convert wrongly), and building the
new one removes it."""

from __future__ import annotations

import fnmatch
from pathlib import Path

from tunery.compiled import cache
from tunery.compiled.lora import LAYOUT


def test_an_older_layout_is_not_found_and_is_swept(tiny_model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TUNERY_COMPILED_DIR", str(tmp_path / "compiled"))
    key = cache.weights_key(tiny_model_dir)
    assert key is not None
    root = cache.compiled_root()
    older = [root / f"{key[:24]}-int8", root / f"{key[:24]}-int8-lora{LAYOUT - 1}"]
    for folder in older:  # complete copies of an older version: a manifest, a graph
        folder.mkdir(parents=True)
        (folder / cache.MANIFEST).write_text('{"precision": "int8"}')
    other = root / f"{key[:24]}-int4"
    other.mkdir()
    (other / cache.MANIFEST).write_text('{"precision": "int4"}')
    assert cache.find(tiny_model_dir, "int8") is None
    name = cache._folder_name(key, "int8")
    assert name.endswith(f"-lora{LAYOUT}") and all(name != f.name for f in older)
    cache._sweep(root, name, key, "int8")
    assert not any(f.exists() for f in older)
    assert other.exists()  # another precision's copy is not this build's to remove


def test_copies_on_some_layers_are_named_apart_and_kept(tiny_model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TUNERY_COMPILED_DIR", str(tmp_path / "compiled"))
    key = cache.weights_key(tiny_model_dir)
    assert key is not None
    root = cache.compiled_root()
    every = cache._folder_name(key, "int8")
    some = cache._folder_name(key, "int8", range(20, 30))
    assert every == f"{key[:24]}-int8-lora{LAYOUT}" and some == f"{key[:24]}-int8-L20-29-lora{LAYOUT}"
    assert cache._folder_name(key, "int8", [8, 0, 1, 2, 3]) == f"{key[:24]}-int8-L0-3_8-lora{LAYOUT}"
    # a tunery before copies had layers swept the folders `KEY-int8-lora*` other than its own
    assert not fnmatch.fnmatch(some, f"{key[:24]}-int8-lora*")
    older = f"{key[:24]}-int8-L20-29-lora{LAYOUT - 1}"
    for name in (every, some, older):
        (root / name).mkdir(parents=True)
        (root / name / cache.MANIFEST).write_text('{"precision": "int8"}')
    assert cache.find(tiny_model_dir, "int8", layers=range(20, 30)).folder.name == some
    assert cache.find(tiny_model_dir, "int8").folder.name == every
    assert cache.find(tiny_model_dir, "int8", layers=[1]) is None
    cache._sweep(root, cache._folder_name(key, "int8", [1]), key, "int8")
    # this layout's copies on other layers are still served; an older layout's are not
    assert (root / every).exists() and (root / some).exists()
    assert not (root / older).exists()


def test_which_layers_a_copy_serving_an_adapter_needs() -> None:
    default = tuple(range(20, 30))
    assert cache.needs_every_layer(default, None)  # layers unknown: taken as every layer
    assert not cache.needs_every_layer(default, {20, 25, 29})  # inside the default: the default copy
    assert cache.needs_every_layer(default, {19, 20})  # outside the default: every layer
    assert not cache.needs_every_layer(None, {3})  # a base whose default copy covers every layer
