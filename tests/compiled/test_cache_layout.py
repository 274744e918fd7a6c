"""A compiled copy is keyed by the layout of its LoRA inputs too: after a change of layout, a copy
of the old one is neither found nor served (its adapters would convert wrongly), and building the
new one removes it."""

from __future__ import annotations

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
