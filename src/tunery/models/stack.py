"""One LoRA adapter from two: a fine-tune of a LoRA fine-tune trains a new adapter on the first one
merged into the base; what it stands for is a single adapter on the base that does both.

Two LoRA updates add: ``s1 B1 A1 + s2 B2 A2 = [s1 B1 | s2 B2] [A1 ; A2]``, so the stacked adapter has
rank ``r1 + r2``, scale 1, and is exact (no approximation). Every path that takes a LoRA adapter on
its base (training from it, serving with PyTorch or the compiled copies, export) takes it unchanged.
A module that only one of the two adapts gets zeros in the other's half.

Used twice: a job's final model is saved stacked (``tunery.training.recipe``), and a checkpoint of
such a job, which holds only the new adapter, runs stacked onto its parent (:func:`on_root`).
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import replace
from pathlib import Path

from tunery.errors import InvalidInput
from tunery.models import registry
from tunery.models.registry import ModelRecord

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json", "README.md")
"""What PEFT writes for an adapter (the README is its model card)."""
STACKED = "stacked-on-parent"
"""The folder, inside a LoRA model whose parent is itself a LoRA fine-tune, holding the two
adapters stacked into one on the root base (:func:`on_root`)."""
_KEY = re.compile(r"^(?P<pre>.+)\.layers\.(?P<layer>\d+)\.(?P<sub>[\w.]+)\.lora_(?P<half>[AB])\.weight$")
_stack_lock = threading.Lock()


def _scale(config: dict) -> float:
    r = config["r"]
    alpha = float(config.get("lora_alpha", r))
    return alpha / r ** 0.5 if config.get("use_rslora") else alpha / r


def _halves(folder: Path) -> tuple[dict, str, dict[tuple[int, str], dict[str, object]]]:
    """The adapter's config, the key prefix before ``.layers.``, and ``{(layer, module): {A, B}}``."""
    from safetensors.torch import load_file

    config = json.loads((folder / "adapter_config.json").read_text())
    out: dict[tuple[int, str], dict[str, object]] = {}
    pre = ""
    for key, t in load_file(str(folder / "adapter_model.safetensors")).items():
        m = _KEY.match(key)
        if m is None:
            raise ValueError(f"{folder}: {key} is not a LoRA weight of a decoder layer; cannot stack")
        pre = m["pre"]
        out.setdefault((int(m["layer"]), m["sub"]), {})[m["half"]] = t.float()
    return config, pre, out


def stack(first: Path, second: Path, out: Path) -> None:
    """Write to ``out`` the adapter equal to ``first`` followed by ``second`` (both PEFT LoRA
    folders on the same base; ``second`` trained with ``first`` merged in)."""
    import torch
    from safetensors.torch import save_file

    (c1, pre, w1), (c2, _, w2) = _halves(first), _halves(second)
    r1, r2, s1, s2 = c1["r"], c2["r"], _scale(c1), _scale(c2)
    layers = sorted({layer for layer, _ in w1.keys() | w2.keys()})
    subs = sorted({sub for _, sub in w1.keys() | w2.keys()})
    # PEFT adapts every listed module of every listed layer: one neither adapter touched is zeros
    shape = {sub: (h["B"].shape[0], h["A"].shape[1]) for (_, sub), h in (*w1.items(), *w2.items())}
    weights = {}
    for layer in layers:
        for sub in subs:
            n_out, n_in = shape[sub]
            halves = []
            for w, r, scale in ((w1, r1, s1), (w2, r2, s2)):
                h = w.get((layer, sub))
                halves.append((h["A"], h["B"] * scale) if h else (torch.zeros(r, n_in), torch.zeros(n_out, r)))
            key = f"{pre}.layers.{layer}.{sub}"
            weights[f"{key}.lora_A.weight"] = torch.cat([halves[0][0], halves[1][0]]).contiguous()
            weights[f"{key}.lora_B.weight"] = torch.cat([halves[0][1], halves[1][1]], dim=1).contiguous()
    config = {**c1, "r": r1 + r2, "lora_alpha": r1 + r2, "use_rslora": False, "lora_dropout": 0.0,
              "target_modules": sorted({sub.rsplit(".", 1)[-1] for sub in subs}), "layers_to_transform": layers,
              "layers_pattern": None, "rank_pattern": {}, "alpha_pattern": {}}
    out.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(out / "adapter_model.safetensors"))
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2))


def on_root(rec: ModelRecord) -> ModelRecord:
    """``rec`` as an adapter directly on its root base. A LoRA model whose parent is a LoRA
    fine-tune, the checkpoint of a job that started from one, holds only the adapter it trained
    over that fine-tune merged into the base; it runs as the two stacked into one adapter on the
    base (exact, :func:`stack`), the way the job's final model is saved. The stacked adapter is
    written once into the model's folder (:data:`STACKED`; removed with it) and again when either
    adapter's weights change. Serving, export and a job that starts from ``rec`` all take this."""
    if not rec.is_adapter or not rec.parent:
        return rec
    parent = registry.get(rec.parent)
    if not parent.is_adapter:
        return rec
    parent = on_root(parent)
    out = rec.path / STACKED
    stamp = {"adapter": _weights_stamp(rec.path), "parent": [str(parent.path), _weights_stamp(parent.path)]}
    with _stack_lock:
        try:
            current = json.loads((out / "stacked-from.json").read_text())
        except (OSError, ValueError):
            current = None
        if current != stamp:
            from tunery.home import CannotWrite, atomic_dir, atomic_write_json

            try:
                with atomic_dir(out) as tmp:
                    stack(parent.path, rec.path, tmp)
                    atomic_write_json(tmp / "stacked-from.json", stamp)  # last: says what it was made from
            except CannotWrite:
                raise  # the home cannot be written: not the adapters' fault
            except (OSError, ValueError, KeyError) as e:
                raise InvalidInput(f"model {rec.id!r} continues the LoRA fine-tune {parent.id!r}, and the two "
                                   f"adapters cannot be combined: {e}", param="model",
                                   hint="use the job's final model, or check the files of both") from e
    return replace(rec, path=out, parent=parent.parent)


def _weights_stamp(folder: Path) -> list[int]:
    weights = folder / "adapter_model.safetensors"
    if not weights.exists():
        raise InvalidInput(f"{folder} has no adapter_model.safetensors", param="model",
                           hint="the fine-tune's files are missing; remove it with `tunery models remove`")
    st = weights.stat()
    return [st.st_size, st.st_mtime_ns]
