"""The fast copy a base model is served from: one quantized ONNX graph per set of base weights and
precision, built on first use (progress lines; 33 s for SmolLM2-135M at int8) and cached under
``TUNERY_HOME/compiled/``, with LoRA inputs so that every LoRA fine-tune and checkpoint of that
base is served as an adapter over the same copy (``tunery.compiled.lora``), never as a merged copy
of its own. The copy's LoRA side paths sit on the layers of the base's default LoRA only (its
catalog's ``lora_layers``), as idle side paths cost decode speed; a fine-tune that adapts other
layers is served from a second copy with side paths on every layer (:func:`needs_every_layer`).

The cache is keyed by the weights' content (SHA-256 of the safetensors files), not by a model's
name: two names for the same weights share one copy, and weights rewritten in place get a new one.

Precision (``--precision``): ``int8`` by default, chosen by measurement (benchmarks/RESULTS.md,
"Serving precision and the fast path"): served through 8-bit block-wise weights, the quickstart's
fine-tune kept its held-out loss within 0.02% of float32 (the base +0.25%), where GPTQ int4 cost
+1.5% for ~15% more speed. ``int4`` is there for whoever prefers the speed; ``fp32`` means the
PyTorch engine (no compiled copy). Each copy is checked against the float32
model when it is built, the same way an export is (``tunery.compiled.verify``: loss on the
bundled held-out travel chats, top-1 and greedy agreement), and the figures go in its manifest,
``tunery-compiled.json``, which ``tunery models show`` and the studio display. A copy whose loss
moved more than :data:`QUALITY_GUARD` is still served, and says so.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunery.errors import InvalidInput
from tunery.home import atomic_dir, atomic_write_json, home
from tunery.progress import Progress, say

if TYPE_CHECKING:
    from tunery.models.registry import ModelRecord

log = logging.getLogger(__name__)

PRECISIONS = ("int8", "int4", "fp32")
DEFAULT_PRECISION = "int8"
PRECISION_ENV = "TUNERY_PRECISION"
PRECISION_HELP = ("int8 (the default: a quantized copy of the base built once, fine-tunes as adapters over it, "
                  "held-out loss within 1% of float32), int4 (faster, but +1.5% loss on the bundled fine-tune) or "
                  "fp32 (the PyTorch engine, full precision, slow)")
MANIFEST = "tunery-compiled.json"
QUALITY_GUARD = 0.01
"""The largest relative change of held-out loss a compiled copy should show against float32."""

CALIBRATION_CHATS = 128
CALIBRATION_TOKENS = 512  # per chat; longer ones are cut
CALIBRATION_BUDGET = 8192  # tokens in all: on SmolLM2, 4k to 15k tokens gave the same loss within 1.5%

COMPILED_PRECISIONS = ("int8", "int4")
"""The precisions served from a compiled copy (each is also ``onnx_build``'s ``quantize`` name)."""


def check_precision(value: str | None) -> str:
    """A precision name, checked; ``None``, ``""`` or ``auto``: ``TUNERY_PRECISION`` when set, else
    :data:`DEFAULT_PRECISION`."""
    raw = (value or "").strip().lower()
    if raw in ("", "auto"):
        raw = os.environ.get(PRECISION_ENV, "").strip().lower() or DEFAULT_PRECISION
        source = f"{PRECISION_ENV}={raw}" if os.environ.get(PRECISION_ENV) else raw
    else:
        source = raw
    if raw in ("float32", "none"):
        raw = "fp32"
    if raw not in PRECISIONS:
        raise InvalidInput(f"unknown precision {source!r}", param="precision",
                           hint=f"use one of: {', '.join(PRECISIONS)} (int8 is the default)")
    return raw


def unsupported(hf_dir: Path) -> str | None:
    """Why the fast path cannot take the model in ``hf_dir`` (None when it can). Every request
    asks: the answer is remembered per folder and config.json's mtime."""
    config = Path(hf_dir) / "config.json"
    try:
        mtime = config.stat().st_mtime_ns
    except OSError:
        return f"{hf_dir} has no readable config.json"
    why = _unsupported(str(hf_dir), mtime)
    if why is None and not _weight_files(Path(hf_dir)):
        return f"{hf_dir} has no safetensors weights"
    return why


@functools.lru_cache(maxsize=256)
def _unsupported(hf_dir: str, config_mtime: int) -> str | None:
    from tunery.compiled.onnx_build import builder_refuses

    try:
        import onnxruntime_genai  # noqa: F401
    except ImportError:
        return "onnxruntime-genai is not installed"
    try:
        cfg = json.loads((Path(hf_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return f"{hf_dir} has no readable config.json"
    return builder_refuses(cfg)


def _weight_files(hf_dir: Path) -> list[Path]:
    return sorted(hf_dir.glob("*.safetensors"))


_keys: dict[str, str] = {}
_keys_lock = threading.Lock()
KEYS = "weights-keys.json"
"""Beside the copies: each weights file set's key by path, size and mtime, so a new process does
not hash hundreds of megabytes again to find its copy."""


def weights_key(hf_dir: Path, *, compute: bool = True) -> str | None:
    """SHA-256 of the weight files (names and bytes); remembered (in memory and in :data:`KEYS`)
    per file path, size and mtime. ``compute=False``: only a remembered key (None if there is
    none), for listings that must not hash gigabytes."""
    files = _weight_files(Path(hf_dir))
    stamp = json.dumps([(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files])
    with _keys_lock:
        if stamp not in _keys:
            _keys.update(_read_keys())
        if stamp in _keys or not compute:
            return _keys.get(stamp)
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0")
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    key = h.hexdigest()
    with _keys_lock:
        _keys[stamp] = key
        known = {**_read_keys(), stamp: key}
        with contextlib.suppress(OSError):
            compiled_root().mkdir(parents=True, exist_ok=True)
            atomic_write_json(compiled_root() / KEYS, dict(list(known.items())[-256:]))
    return key


def _read_keys() -> dict[str, str]:
    try:
        data = json.loads((compiled_root() / KEYS).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class CompiledBase:
    """A built copy: its folder (an onnxruntime-genai model folder with LoRA inputs) and manifest."""

    folder: Path
    manifest: dict[str, Any]

    @classmethod
    def at(cls, folder: Path) -> CompiledBase:
        manifest = _read_manifest(Path(folder))
        if manifest is None:
            raise InvalidInput(f"{folder} is not a compiled copy (no readable {MANIFEST})", param="model")
        return cls(Path(folder), manifest)

    @property
    def precision(self) -> str:
        return str(self.manifest["precision"])

    def adapter_file(self, peft_dir: Path, key: str, *, isolated: bool = False) -> Path:
        """The ``.onnx_adapter`` of the PEFT adapter in ``peft_dir`` for this copy, converted on first
        use (a fraction of a second; ``isolated``: in a child process, a second or two) and kept
        beside the copy; ``key`` names the adapter's weights (a rewritten adapter has a new key, and
        its older file is removed).

        Why ``isolated``: a server converting in its own process keeps what the conversion imports
        (``onnx``, onnxruntime's Python module: ~35 MiB measured on SmolLM2) resident for good."""
        stem = _digest(str(Path(peft_dir).resolve()))
        out = self.folder / "adapters" / f"{stem}-{_digest(key)}.onnx_adapter"
        if not out.exists():
            out.parent.mkdir(exist_ok=True)
            if isolated:
                _convert_in_child(Path(peft_dir), self.folder, out)
            else:
                from tunery.compiled.lora import write_adapter

                write_adapter(Path(peft_dir), self.folder, out)
            for older in out.parent.glob(f"{stem}-*.onnx_adapter"):
                if older != out:
                    older.unlink(missing_ok=True)  # a loaded adapter lives in memory, not in the file
        return out


def _convert_in_child(peft_dir: Path, folder: Path, out: Path) -> None:
    """``lora.write_adapter`` in a child process (``python -m tunery.compiled.lora``); its refusal
    comes back as the same :class:`InvalidInput`."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "tunery.compiled.lora", str(peft_dir), str(folder), str(out)],
                          capture_output=True, text=True, check=False)
    if done.returncode == 0:
        return
    try:
        error = json.loads(done.stdout.strip().splitlines()[-1])["error"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise RuntimeError(f"converting the LoRA adapter in {peft_dir} failed: "
                           f"{done.stderr.strip()[-2000:] or done.returncode}") from None
    raise InvalidInput(error["message"], param=error.get("param"), hint=error.get("hint"))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def compiled_root() -> Path:
    """``TUNERY_COMPILED_DIR`` when set (several homes may share one: copies are keyed by the
    weights' content), else ``TUNERY_HOME/compiled``."""
    shared = os.environ.get("TUNERY_COMPILED_DIR")
    return Path(shared).expanduser() if shared else home().root / "compiled"


def find(hf_dir: Path, precision: str, *, layers: Sequence[int] | None = None,
         hash_unknown: bool = True) -> CompiledBase | None:
    """The built copy of ``hf_dir`` at ``precision`` with side paths on ``layers`` (None: all), if
    there is one (``hash_unknown=False``: None too when the weights' key was never computed, rather
    than hash them now)."""
    key = weights_key(hf_dir, compute=hash_unknown)
    if key is None:
        return None
    folder = compiled_root() / _folder_name(key, precision, layers)
    manifest = _read_manifest(folder)
    return CompiledBase(folder, manifest) if manifest is not None else None


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def ensure(hf_dir: Path, precision: str, *, layers: Sequence[int] | None = None, name: str = "",
           progress: Progress | None = None) -> CompiledBase:
    """The copy of ``hf_dir`` at ``precision`` (``int8`` or ``int4``) with LoRA side paths on the
    decoder ``layers`` (None: every layer), built when missing. Two processes asking at once build
    it once (a file lock); a copy appears whole or not at all.

    Why ``layers``: a side path runs at every decode step whether an adapter uses it or not; on
    SmolLM2, those of the 20 layers its default LoRA leaves alone cost 5-16% of decode speed
    (benchmarks/RESULTS.md, "Side paths on the default LoRA's layers only"). The
    server asks for the base's default copy (:func:`default_copy_layers`) and for a copy with
    every layer only when an adapter reaches outside it (:func:`needs_every_layer`); so does a
    fine-tuning job, to build that copy before the fine-tune is first served."""
    if precision not in COMPILED_PRECISIONS:
        raise InvalidInput(f"there is no compiled copy at precision {precision!r}", param="precision")
    hf_dir = Path(hf_dir)
    layers = None if layers is None else tuple(sorted({int(n) for n in layers}))
    found = find(hf_dir, precision, layers=layers)
    if found is not None:
        return found
    root = compiled_root()
    root.mkdir(parents=True, exist_ok=True)
    key = weights_key(hf_dir)
    assert key is not None
    folder = root / _folder_name(key, precision, layers)
    with _locked(root / f".{folder.name}.lock"):
        found = find(hf_dir, precision, layers=layers)
        if found is not None:
            return found
        _sweep(root, folder.name, key, precision)
        return _build(hf_dir, folder, precision, key, name or hf_dir.name, progress, layers)


def default_copy_layers(base: ModelRecord) -> tuple[int, ...] | None:
    """The layers with side paths in the copy a base model and its default fine-tunes are served
    from: its catalog's LoRA layers that the model has; every layer (None) when it has no catalog
    entry or no such layers (an empty list means every layer to training too)."""
    wanted = base.spec.training.lora_layers if base.spec is not None else None
    return _layers_in(str(base.path), tuple(wanted)) if wanted else None


def _layers_in(path: str, wanted: tuple[int, ...]) -> tuple[int, ...] | None:
    try:
        stamp = (Path(path) / "config.json").stat().st_mtime_ns
    except OSError:
        return None  # not remembered: the folder may appear
    return _layers_of(path, stamp, wanted)


@functools.lru_cache(maxsize=64)
def _layers_of(path: str, stamp: int, wanted: tuple[int, ...]) -> tuple[int, ...] | None:
    try:
        n = int(json.loads((Path(path) / "config.json").read_text())["num_hidden_layers"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    have = tuple(sorted({k for k in wanted if 0 <= k < n}))
    if len(have) < len(set(wanted)):
        log.warning("the catalog's LoRA layers %s are not all in %s (%d layers): its compiled copy gets "
                    "adapter inputs on %s", list(wanted), path, n, list(have) or "every layer")
    return have or None


def needs_every_layer(default: Sequence[int] | None, adapted: Iterable[int] | None) -> bool:
    """Whether an adapter on the decoder layers ``adapted`` (None: unknown, so every layer) is served
    from the copy with side paths on every layer rather than the base's default copy, whose layers
    are ``default`` (:func:`default_copy_layers`; None: every layer already). The one rule serving
    routes by and a job prepares for."""
    return default is not None and (adapted is None or not set(adapted) <= set(default))


def build_in_child(hf_dir: Path, precision: str, *, layers: Sequence[int] | None = None, name: str = "",
                   stop: Callable[[], bool] = lambda: False, poll_s: float = 0.5) -> bool:
    """:func:`ensure` in a child process of its own session, killed with whatever it started (the
    model builder) as soon as ``stop()`` says so; True when the copy was built. A killed build
    leaves a scratch folder that the next build of the copy sweeps, and its lock dies with it."""
    import signal
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryFile() as err:
        child = subprocess.Popen([sys.executable, "-m", "tunery.compiled.cache", str(hf_dir), precision, name,
                                  json.dumps(None if layers is None else [int(n) for n in layers])],
                                 stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        while child.poll() is None:
            if stop():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.wait()
                return False
            time.sleep(poll_s)
        if child.returncode != 0:
            err.seek(0)
            log.warning("building the %s copy of %s failed (exit %s): %s", precision, name or hf_dir,
                        child.returncode, err.read().decode(errors="replace")[-2000:])
        return child.returncode == 0


def _folder_name(key: str, precision: str, layers: Sequence[int] | None = None) -> str:
    """A copy's folder: the weights' key, the precision, the layers with side paths when not all
    (``-L20-29``) and the layout of its LoRA inputs (``lora.LAYOUT``), so a copy whose adapters
    convert differently is built anew, never reused. The layers come before the layout: a tunery
    from before copies had layers (layout 3 on all of them) sweeps ``KEY-PRECISION-lora*`` folders
    other than its own, and must not take these for its older copies."""
    from tunery.compiled.lora import LAYOUT

    return f"{key[:24]}-{precision}" + ("" if layers is None else f"-L{layer_spans(layers)}") + f"-lora{LAYOUT}"


def layer_spans(layers: Iterable[int]) -> str:
    """``20-29`` for 20..29, ``0-3_8`` for 0..3 and 8."""
    runs: list[list[int]] = []
    for n in sorted({int(n) for n in layers}):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return "_".join(f"{a}-{b}" if a != b else str(a) for a, b in runs)


def _sweep(root: Path, name: str, key: str, precision: str) -> None:
    """Remove what a build of ``name`` killed midway left (we hold its lock, so no build of it
    runs), copies of the same weights and precision with LoRA inputs of an older layout (this
    version cannot convert adapters for them; copies of this layout on other layers are kept), and
    the model builder's scratch folders older than a day."""
    import shutil

    from tunery.compiled.lora import LAYOUT

    for tmp in root.glob(f".{name}.*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True)
    stem = f"{key[:24]}-{precision}"
    for older in [root / stem, *root.glob(f"{stem}-lora*"), *root.glob(f"{stem}-L*-lora*")]:
        if not older.name.endswith(f"-lora{LAYOUT}") and older.is_dir():
            shutil.rmtree(older, ignore_errors=True)
    for scratch in root.glob("tunery-onnx-cache-*"):
        with contextlib.suppress(OSError):
            if time.time() - scratch.stat().st_mtime > 86400:
                shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def _locked(path: Path):
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _build(hf_dir: Path, folder: Path, precision: str, key: str, name: str,
           progress: Progress | None, layers: Sequence[int] | None) -> CompiledBase:
    from tunery.compiled.lora import LAYOUT, add_lora_inputs
    from tunery.compiled.onnx_build import build_onnx

    started = time.monotonic()
    say(progress, f"building the {precision} copy of {name} for fast serving (once per base model)")
    with atomic_dir(folder) as tmp:
        calibration = calibration_ids(hf_dir, _bundled_chats()) if precision == "int4" else None
        quantization = build_onnx(hf_dir, tmp, precision, calibration=calibration,
                                  work_dir=folder.parent, progress=progress)
        say(progress, "adding LoRA inputs, so fine-tunes of this base run as adapters over it"
                      + ("" if layers is None else f" (layers {layer_spans(layers)})"))
        lora_inputs = add_lora_inputs(tmp, layers)
        say(progress, f"checking the {precision} copy against the float32 model on held-out chats")
        quality = measure_quality(hf_dir, tmp, precision)
        manifest = {"precision": precision, "source": name, "source_path": str(hf_dir), "weights_sha256": key,
                    "built_at": int(time.time()), "build_seconds": round(time.monotonic() - started, 1),
                    "lora_inputs": len(lora_inputs), "lora_layout": LAYOUT,
                    "lora_layers": None if layers is None else list(layers),
                    "quantization": quantization, "quality": quality,
                    "quality_guard": QUALITY_GUARD, "within_guard": abs(quality["loss_delta"]) <= QUALITY_GUARD}
        atomic_write_json(tmp / MANIFEST, manifest)  # last: a folder with it is complete
    return CompiledBase(folder, manifest)


def measure_quality(hf_dir: Path, folder: Path, precision: str) -> dict[str, Any]:
    """The copy in ``folder`` against the float32 model in ``hf_dir`` (no adapter active): loss on
    the bundled held-out travel chats, top-1 and greedy-token agreement."""
    import torch

    from tunery.compiled.scorers import OnnxScorer, TorchScorer
    from tunery.compiled.verify import DEFAULT_PROMPTS, Tolerance, verify
    from tunery.models.loading import load_base_model, stop_token_ids

    tokenizer = _tokenizer(hf_dir)
    source = TorchScorer(load_base_model(hf_dir, dtype=torch.float32).eval())
    report = verify(source, OnnxScorer(folder), tokenizer, fmt="compiled", quantize=precision,
                    tol=Tolerance(min_greedy=0.0, min_top1=0.0, max_loss_delta=QUALITY_GUARD),
                    stop_ids=stop_token_ids(None, hf_dir), texts=_bundled_chats(validation=True),
                    prompts=DEFAULT_PROMPTS[:1], greedy_tokens=16)
    return {"texts": "bundled travel validation chats", "scored_tokens": report.scored_tokens,
            "fp32_loss": round(report.source_loss, 5), "loss": round(report.export_loss, 5),
            "loss_delta": round(report.loss_delta, 5), "top1_agreement": round(report.top1_agreement, 4),
            "greedy_agreement": round(report.greedy_agreement, 4), "kl": round(report.kl, 5)}


def _bundled_chats(*, validation: bool = False) -> list[list[dict[str, Any]]]:
    """The travel chats bundled with tunery: what a copy is calibrated (int4) and checked on."""
    from tunery.data.validate import load_examples
    from tunery.examples import TRAVEL_TRAIN, TRAVEL_VALIDATION

    return [c.to_dicts() for c in load_examples(TRAVEL_VALIDATION if validation else TRAVEL_TRAIN,
                                                purpose="validation")]


def calibration_ids(hf_dir: Path, chats: Sequence[Sequence[dict[str, Any]]]) -> list[list[int]]:
    """Token ids of up to :data:`CALIBRATION_CHATS` chats, each cut at :data:`CALIBRATION_TOKENS`,
    :data:`CALIBRATION_BUDGET` tokens in all: GPTQ's calibration data."""
    if not chats:
        return []
    from tunery.chat_template import render
    from tunery.compiled.verify import encode

    tok = _tokenizer(hf_dir)
    out: list[list[int]] = []
    total = 0
    for messages in list(chats)[:CALIBRATION_CHATS]:
        if total >= CALIBRATION_BUDGET:
            break
        ids = encode(tok, render(tok, messages, generation_prompt=False))[:CALIBRATION_TOKENS]
        out.append(ids)
        total += len(ids)
    return out


def _tokenizer(hf_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(hf_dir))


def _main(argv: list[str]) -> int:
    """``python -m tunery.compiled.cache HF_DIR PRECISION NAME LAYERS_JSON``: :func:`ensure` in a
    process of its own (:func:`build_in_child`)."""
    layers = json.loads(argv[3])
    ensure(Path(argv[0]), argv[1], layers=layers, name=argv[2])
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_main(sys.argv[1:]))
