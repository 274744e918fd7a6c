"""Load registered models into memory: tokenizer, base weights, LoRA adapters."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import json
import logging
import threading
import time
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from tunery.errors import InvalidInput, json_kind
from tunery.home import Home, atomic_write_json, atomic_write_text
from tunery.models import registry
from tunery.models.registry import ModelRecord

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def _quiet_transformers() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()  # "Loading weights" bars, outside the CLI too
    logging.getLogger("transformers").setLevel(logging.ERROR)
    # PEFT reads this deprecated property each time it wraps a model: not the user's concern
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


def base_path(rec: ModelRecord) -> Path:
    """The folder holding the full weights this model runs on."""
    return rec.root().path


def tokenizer_dir(rec: ModelRecord) -> Path:
    """The folder whose tokenizer files a model uses: its own when it has them, else its base's."""
    return rec.path if (rec.path / "tokenizer_config.json").exists() else base_path(rec)


_tokenizer_keys: dict[tuple, str] = {}
_NOT_TOKENIZER = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".onnx_adapter", ".data",
                  ".gguf")


def tokenizer_key(rec: ModelRecord) -> str:
    """A digest of the files :func:`load_tokenizer` may read for ``rec`` (every file of its
    tokenizer folder but weights, and its ``additional_chat_templates``), remembered per path,
    size and mtime."""
    folder = tokenizer_dir(rec)
    files = sorted(f for f in folder.iterdir() if f.is_file() and not f.name.endswith(_NOT_TOKENIZER)) \
        if folder.is_dir() else []
    files += sorted((folder / "additional_chat_templates").glob("*.jinja"))  # transformers reads these too
    stamp = (str(folder), *((str(f.relative_to(folder)), f.stat().st_size, f.stat().st_mtime_ns) for f in files))
    key = _tokenizer_keys.get(stamp)
    if key is None:
        h = hashlib.sha256()
        for f in files:
            h.update(str(f.relative_to(folder)).encode() + b"\0" + f.read_bytes())
        key = _tokenizer_keys[stamp] = h.hexdigest() if files else str(folder)
    return key


TOKENIZER_CLASSES = "tokenizer-classes.json"
"""In the home's cache: the class ``AutoTokenizer`` chose, per tokenizer files and transformers version."""


def _auto_tokenizer(path: Path, key: str) -> PreTrainedTokenizerBase:
    """``AutoTokenizer.from_pretrained(path)``, without importing torch when these files were loaded before.

    ``AutoTokenizer`` reads the model's config to choose a tokenizer class, and transformers'
    config module imports torch: more than half of the time a cold ``tunery ask`` took to its
    first token on the compiled fast path, which needs no torch. Every choice it makes ends with that class's own
    ``from_pretrained(path, _from_auto=True)``, so the class is remembered under ``key`` (the
    files' digest) and the transformers version, and the next process calls it directly: the same
    tokenizer. A class from a model's own code (``trust_remote_code``) is never remembered."""
    import transformers

    memo, key = Home.from_env().cache / TOKENIZER_CLASSES, f"{key}@{transformers.__version__}"
    known = _read_json(memo)
    module, _, name = str(known.get(key, "")).partition(":")
    if module.startswith("transformers.") and name:
        from transformers.tokenization_utils_base import PreTrainedTokenizerBase  # imports no torch

        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):  # not this installation's: choose again
            cls = None
        if isinstance(cls, type) and issubclass(cls, PreTrainedTokenizerBase):  # a hand-edited entry: no
            try:
                return cls.from_pretrained(path, _from_auto=True)
            except Exception as e:  # noqa: BLE001 - a stale entry is a cache miss: AutoTokenizer decides
                log.debug("remembered tokenizer class %s failed on %s (%s); asking AutoTokenizer", cls, path, e)
    tok = transformers.AutoTokenizer.from_pretrained(path)
    cls = type(tok)
    if cls.__module__.startswith("transformers."):
        _remember(memo, key, f"{cls.__module__}:{cls.__qualname__}")
    return tok


_MEMO_KEPT = 256
_memo_lock = threading.Lock()


def _remember(memo: Path, key: str, value: object) -> dict:
    """Set ``key`` in the JSON file ``memo`` (one of the cache's memos), keeping its last
    :data:`_MEMO_KEPT` entries, and return what it now holds. Another process may write it at the
    same moment: an entry lost that way is only worked out again on a later load. A read-only home
    only loses the shortcut."""
    with _memo_lock:
        known = dict(list({**_read_json(memo), key: value}.items())[-_MEMO_KEPT:])
        with contextlib.suppress(OSError):
            memo.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(memo, known)
        return known


def read_json_object(path: Path, *, param: str, hint: str | None = None) -> dict:
    """A JSON file that must hold an object (a model's config.json, an export's manifest), or an
    InvalidInput naming the file and, for a parse error, the line."""
    try:
        data = json.loads(Path(path).read_bytes())
    except OSError as e:
        raise InvalidInput(f"cannot read {path}: {e.strerror or e}", param=param, hint=hint) from None
    except json.JSONDecodeError as e:
        raise InvalidInput(f"{path}, line {e.lineno}: not valid JSON ({e.msg})", param=param, hint=hint) from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{path} is not UTF-8 text: save it as UTF-8", param=param, hint=hint) from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{path} must hold a JSON object, not {json_kind(data)}", param=param, hint=hint)
    return data


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


LIGHT_TOKENIZERS = "light-tokenizers.json"
"""In the home's cache: per tokenizer files, library versions and snapshot version, whether a
:class:`~tunery.models.light_tokenizer.LightTokenizer` agreed with transformers' tokenizer (the
name of its snapshot in ``light-tokenizers/``) or the difference it showed."""


@functools.cache
def _light_versions() -> str:
    """The versions a light tokenizer's verdict depends on (they do not change in a process)."""
    from importlib.metadata import PackageNotFoundError, version

    from tunery.models.light_tokenizer import SNAPSHOT_VERSION

    def v(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "?"

    return "@".join([*(f"{p} {v(p)}" for p in ("transformers", "tokenizers", "jinja2")),
                     f"snapshot {SNAPSHOT_VERSION}"])


def _light_key(key: str) -> str:
    return f"{key}@{_light_versions()}"


_lights: OrderedDict[str, PreTrainedTokenizerBase] = OrderedDict()
_lights_lock = threading.Lock()
_LIGHTS_KEPT = 16  # as many as the serving manager keeps
_SNAPSHOTS = "light-tokenizers"


def _light_tokenizer(path: Path, key: str) -> PreTrainedTokenizerBase | None:
    """The light tokenizer of ``path`` when these files agreed with transformers' before. One per
    process and snapshot, the last few kept: a fine-tune's folder holds a copy of its base's
    tokenizer files beside files of its own, so the two have different keys and one snapshot
    (named by its content); reading a tokenizer takes ~0.2 s, and the Rust tokenizer is safe to
    share between threads (encoding and decoding never change it)."""
    cache = Home.from_env().cache
    name = _read_json(cache / LIGHT_TOKENIZERS).get(_light_key(key))
    if not isinstance(name, str) or not name.isalnum():  # a difference, or no verdict yet
        return None
    with _lights_lock:
        if name in _lights:
            _lights.move_to_end(name)
            return _lights[name]
    from tunery.models.light_tokenizer import LightTokenizer

    def full() -> PreTrainedTokenizerBase:
        _quiet_transformers()
        return _auto_tokenizer(path, key)

    folder = cache / _SNAPSHOTS
    state = {**_read_json(folder / f"{name}.json"), "backend_file": folder / f"{name}.tokenizer.json"}
    tok = LightTokenizer.from_snapshot(state, full)
    if tok is None:
        return None
    with _lights_lock:
        tok = _lights.setdefault(name, tok)  # type: ignore[arg-type]
        while len(_lights) > _LIGHTS_KEPT:
            _lights.popitem(last=False)
    return tok


def _judge_light(path: Path, key: str, tok: PreTrainedTokenizerBase) -> None:
    """Snapshot ``tok`` (transformers' tokenizer of ``path``), compare the light tokenizer made of
    it with ``tok`` once, and remember the verdict (the snapshot's name when they agree) for
    :func:`_light_tokenizer`. A probe that breaks is not remembered: the next load tries again."""
    cache, vkey = Home.from_env().cache, _light_key(key)
    memo, folder = cache / LIGHT_TOKENIZERS, cache / _SNAPSHOTS
    known = _read_json(memo).get(vkey)
    if isinstance(known, str) and (not known.isalnum() or (folder / f"{known}.json").is_file()):
        return  # a difference found before, or a snapshot still there; anything else is checked again
    from tunery.models.light_tokenizer import LightTokenizer, snapshot, verify

    try:
        state = snapshot(tok)
        light = None if state is None else LightTokenizer.from_snapshot(state, lambda: tok)
        verdict = "not a fast tokenizer with a chat template" if light is None else verify(light, tok)
    except Exception as e:  # noqa: BLE001 - never an error for the user: transformers serves this time
        log.debug("could not check the light tokenizer of %s: %s", path, e)
        return
    same = {k: v for k, v in (state or {}).items() if k != "name_or_path"}  # the folder's name is no difference
    name = hashlib.sha256(json.dumps(same, sort_keys=True).encode()).hexdigest()[:32] if verdict is None else ""
    if not name:
        log.debug("tokenizer of %s served by transformers: %s", path, verdict)
    with contextlib.suppress(OSError):  # a read-only home only loses the shortcut
        if name:
            folder.mkdir(parents=True, exist_ok=True)
            rest = {k: v for k, v in state.items() if k != "backend"}  # type: ignore[union-attr]
            atomic_write_text(folder / f"{name}.tokenizer.json", state["backend"])  # type: ignore[index]
            atomic_write_json(folder / f"{name}.json", rest)  # last: its presence means the pair is whole
        known = _remember(memo, vkey, name or verdict)
        stale = time.time() - 3600  # an hour: never another process's snapshot it has yet to name
        for old in folder.glob("*.json"):  # snapshots no verdict names any more
            if old.name.split(".")[0] not in known.values() and old.stat().st_mtime < stale:
                old.unlink(missing_ok=True)


def load_tokenizer(model: str | ModelRecord, *, light: bool = False) -> PreTrainedTokenizerBase:
    """The model's tokenizer (transformers'). With ``light``, for serving: a
    :class:`~tunery.models.light_tokenizer.LightTokenizer` when its files agreed with transformers'
    tokenizer before, which spares a cold process the import of transformers; the first load of
    new files checks them."""
    rec = registry.get(model) if isinstance(model, str) else model
    path = tokenizer_dir(rec)
    key = tokenizer_key(rec)
    tok = _light_tokenizer(path, key) if light else None
    if tok is None:
        _quiet_transformers()
        try:
            tok = _auto_tokenizer(path, key)
        except (OSError, ValueError) as e:  # a broken file in the model folder (config.json, tokenizer.json)
            raise InvalidInput(f"cannot load the tokenizer of model {rec.id!r} from {path}: {e}", param="model",
                               hint=f"repair the folder, or remove the model with `tunery models remove {rec.id}`"
                               ) from None
        if light:
            _judge_light(path, key, tok)
    if tok.chat_template is None:
        raise InvalidInput(f"model {rec.id!r} has no chat template in {path}", param="model",
                           hint="add one to tokenizer_config.json (chat_template)")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def stop_token_ids(tokenizer: PreTrainedTokenizerBase | None, path: Path) -> list[int]:
    """End-of-turn token ids of a model folder: the eos ids of its generation config and, in an
    ONNX export, of its ``genai_config.json``, plus the tokenizer's (when one is given)."""
    ids: list[int] = []
    for name, eos_of in (("generation_config.json", lambda d: d.get("eos_token_id")),
                         ("genai_config.json", lambda d: d.get("model", {}).get("eos_token_id"))):
        if (Path(path) / name).exists():
            eos = eos_of(json.loads((Path(path) / name).read_text()))
            ids += eos if isinstance(eos, list) else ([eos] if eos is not None else [])
    if tokenizer is not None and tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return sorted({int(i) for i in ids})


def attention_mask(allowed: torch.Tensor, config, dtype: torch.dtype, *, plain_causal: bool = False
                   ) -> torch.Tensor | None:
    """An explicit 4-D mask (``True`` = may attend) in the form the model's attention takes: as is
    for sdpa, additive (0 or the dtype's minimum) for the eager implementation. A ``plain_causal``
    mask (square, nothing else hidden) is None for sdpa, whose causal fast path needs no mask; eager
    attention masks nothing without one, so it always gets the mask."""
    import torch

    if getattr(config, "_attn_implementation", None) != "eager":
        return None if plain_causal else allowed
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)


def load_base_model(path: Path, *, dtype: torch.dtype | None = None) -> PreTrainedModel:
    import torch
    from transformers import AutoModelForCausalLM

    _quiet_transformers()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32)
    model.eval()
    return model


def lora_module_names(model: torch.nn.Module) -> tuple[str, ...]:
    """The dotted names of the modules of ``model`` that LoRA (PEFT) can adapt: linear layers,
    transformers' ``Conv1D`` (GPT-2's projections), embeddings and convolutions."""
    import torch
    from transformers.pytorch_utils import Conv1D

    kinds = (torch.nn.Linear, Conv1D, torch.nn.Embedding, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    return tuple(n for n, m in model.named_modules() if isinstance(m, kinds))


def folder_lora_module_names(path: Path) -> tuple[str, ...] | None:
    """:func:`lora_module_names` of the model in folder ``path``, from its architecture alone: the
    model is built on the meta device from its config.json, so no weight is read or allocated.
    None when transformers cannot build it from the config (an unknown or too new architecture,
    remote code): training then names the problem. Remembered per folder and config.json version."""
    config = Path(path) / "config.json"
    stat = config.stat()
    return _folder_lora_module_names(str(config.parent), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=32)
def _folder_lora_module_names(path: str, _mtime_ns: int, _size: int) -> tuple[str, ...] | None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    _quiet_transformers()
    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
    except Exception as e:  # noqa: BLE001 - any failure to build it leaves the check to training
        log.debug("cannot build %s on the meta device: %s", path, e)
        return None
    return lora_module_names(model)


def load_model(model: str | ModelRecord, *, dtype: torch.dtype | None = None, merge: bool = False
               ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, ModelRecord]:
    """Load any registered model ready for inference. A LoRA fine-tune loads its base and attaches
    the adapter (merged into the weights when ``merge``); a checkpoint of a job from a LoRA
    fine-tune, its adapter stacked onto that fine-tune's (:func:`tunery.models.stack.on_root`)."""
    from tunery.models.stack import on_root

    rec = registry.get(model) if isinstance(model, str) else model
    tok = load_tokenizer(rec)
    base = load_base_model(base_path(rec), dtype=dtype)
    if rec.is_adapter:
        from peft import PeftModel

        peft_model = PeftModel.from_pretrained(base, on_root(rec).path)
        base = peft_model.merge_and_unload() if merge else peft_model
        base.eval()
    return base, tok, rec
