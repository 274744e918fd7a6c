"""``export_model``: a registered model (base, fine-tune or checkpoint) into a verified Hugging
Face folder, ONNX decoder or GGUF file; and ``register_export``: an ONNX export folder as a model
the server can deploy.

Every export is built in a temporary folder beside the target, loaded back, compared with the
source model on the same prompts, and only then renamed into place with its manifest
(``tunery-export.json``, written last). A failed check discards the export and raises."""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunery.compiled.cache import CALIBRATION_CHATS, calibration_ids
from tunery.compiled.verify import Messages, VerifyReport
from tunery.errors import Conflict, InvalidInput, NotFound, TuneryError
from tunery.export.formats import MANIFEST, check_format, tolerance
from tunery.home import atomic_dir, atomic_write_json, home
from tunery.models import registry
from tunery.models.loading import read_json_object
from tunery.models.registry import ModelRecord
from tunery.progress import Progress, say


class ExportVerificationFailed(TuneryError):
    code = "export_verification_failed"

    def __init__(self, message: str, report: VerifyReport, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.report = report


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    quantize: str
    source_model: str
    files: list[str]
    size_bytes: int
    report: VerifyReport
    seconds: float = 0.0
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def main_file(self) -> Path:
        """The file a user points another tool at (the GGUF file, else the folder)."""
        gguf = [f for f in self.files if f.endswith(".gguf")]
        return self.path / gguf[0] if gguf else self.path


def export_model(model: str | ModelRecord, fmt: str, out: Path, *, quantize: str | None = None,
                 force: bool = False, progress: Progress | None = None,
                 prompts: list[Messages] | None = None, texts: list[Messages] | None = None,
                 greedy_tokens: int = 24, calibration: str | Path | None = None) -> ExportResult:
    """Export ``model`` to ``out`` in ``fmt`` and verify it against the source before returning.

    ``calibration`` (ONNX int4 only): a chat JSONL file for GPTQ; by default a fine-tune's own
    training file, else the bundled travel chats."""
    fmt, quantize = check_format(fmt, quantize)
    if calibration is not None and (fmt, quantize) != ("onnx", "int4"):
        raise InvalidInput("--calibration only applies to --format onnx --quantize int4", param="calibration")
    rec = registry.get(model) if isinstance(model, str) else model
    if rec.meta.get("engine"):  # a registered export (`tunery deploy DIR`): its folder holds no torch weights
        source = rec.meta.get("source_model") or rec.parent
        raise InvalidInput(f"{rec.id} is itself an export ({rec.path}), which cannot be exported again",
                           param="model", hint=f"export its source model instead: `tunery export {source} ...`"
                           if source else "export the model it was made from instead")
    calib_source, calib_chats = _calibration_chats(rec, calibration) if (fmt, quantize) == ("onnx", "int4") \
        else (None, [])
    out = Path(out).expanduser().resolve()
    _check_output(out, force)
    started = time.monotonic()
    home().cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="export-", dir=home().cache) as work, atomic_dir(out) as tmp:
        from tunery.export.hf_folder import write_merged

        work_dir = Path(work)
        hf_dir = tmp if fmt == "hf" else work_dir / "hf"
        say(progress, f"merging {rec.id} into a plain Hugging Face folder" if rec.is_adapter
             else f"writing {rec.id} as a plain Hugging Face folder")
        write_merged(rec, hf_dir)
        gguf_file = None
        quantization: dict[str, Any] | None = None
        if fmt == "onnx":
            from tunery.compiled.onnx_build import build_onnx

            say(progress, f"building the ONNX decoder ({quantize}) with onnxruntime-genai's model builder")
            quantization = build_onnx(hf_dir, tmp, quantize, log_path=work_dir / "builder.log", work_dir=work_dir,
                                      calibration=calibration_ids(hf_dir, calib_chats), progress=progress)
            if quantization is not None:
                quantization["calibration_source"] = calib_source
        elif fmt == "gguf":
            from tunery.export.gguf_export import gguf_filename, write_gguf
            from tunery.export.ollama import write_modelfile

            gguf_file = gguf_filename(quantize)
            say(progress, f"writing {gguf_file}")
            write_gguf(hf_dir, tmp / gguf_file, quantize, name=rec.id)
            write_modelfile(tmp, gguf_file, _chat_template(hf_dir))
        say(progress, "verifying: the same prompts through the export and the source model")
        report = _verify(rec, fmt, quantize, tmp, hf_dir, gguf_file, prompts=prompts, texts=texts,
                         greedy_tokens=greedy_tokens)
        if not report.passed:
            raise ExportVerificationFailed(
                f"the {fmt} ({quantize}) export of {rec.id} does not agree with the source: "
                + "; ".join(report.failures), report, param="quantize",
                hint="nothing was written; try a milder --quantize")
        files = sorted(p.name for p in tmp.iterdir() if p.is_file())
        # safetensors and ONNX's external data are written private (0600) beside files readable by
        # all; an export is made to be copied and served by others, so each file gets the mode any
        # new file gets: the one atomic_dir gave the folder, less execute
        mode = stat.S_IMODE(tmp.stat().st_mode) & 0o666
        for f in files:
            os.chmod(tmp / f, mode)
        size = sum((tmp / f).stat().st_size for f in files)
        manifest = {
            "format": fmt, "quantize": quantize, "source_model": rec.id, "source_kind": rec.kind,
            "parent": rec.parent, "method": rec.method, "created_at": int(time.time()),
            "context_length": rec.context_length, "files": files, "size_bytes": size,
            "engine": "onnx" if fmt == "onnx" else ("llama.cpp" if fmt == "gguf" else "transformers"),
            "verification": report.to_dict(), "tools": _tool_versions(fmt),
        }
        if quantization is not None:
            manifest["quantization"] = quantization
        atomic_write_json(tmp / MANIFEST, manifest)
        # again, just before the rename: in the minutes the export took, the folder may have been
        # deployed (`tunery deploy DIR`), filled with other files, or taken by another export
        _check_output(out, force)
    return ExportResult(path=out, format=fmt, quantize=quantize, source_model=rec.id, files=files + [MANIFEST],
                        size_bytes=size, report=report, seconds=time.monotonic() - started, manifest=manifest)


def _check_output(out: Path, force: bool) -> None:
    """Refuse, before any work, an output the finished export could not replace: a file, a folder of
    the user's own, an earlier export the user added files to (even with --force: only what tunery
    wrote is ever replaced), an earlier export without --force, or a mount point (the finished
    folder is renamed into place, and a mount point cannot be renamed over)."""
    _check_not_state(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise InvalidInput(f"{out} exists and is not a folder", param="output",
                           hint="pick a folder for -o (it is created if missing)")
    if any(out.iterdir()):
        if not is_export_dir(out):
            raise Conflict(f"{out} is not empty and is not a tunery export folder (no {MANIFEST}); tunery does "
                           "not write into a folder of other files, with or without --force", param="output",
                           hint="pick another -o folder, or an empty one")
        added = sorted({p.name for p in out.iterdir()} - {MANIFEST, *read_manifest(out).get("files", [])})
        if added:
            raise Conflict(f"{out} is an earlier export, but holds files it did not write ({', '.join(added[:5])}"
                           f"{', ...' if len(added) > 5 else ''}), so it is not replaced, with or without --force",
                           param="output", hint="move those files out, or pick another -o folder")
        if not force:
            raise Conflict(f"{out} already holds an export", param="output",
                           hint="pass --force to replace it, or pick another -o folder")
        _check_unregistered(out)
    if os.path.ismount(out):
        raise InvalidInput(f"{out} is a mount point: the finished export is renamed into place, which a mount "
                           "point does not allow", param="output", hint=f"export into a folder inside it, e.g. "
                           f"-o {out / 'export'}")


def _check_not_state(out: Path) -> None:
    """Refuse one of the folders tunery keeps its state in (a new home's are empty): later state
    would land in the export, and `tunery models remove` of the export, once deployed, deletes its
    folder when it lies in TUNERY_HOME, with all the models, files or jobs in it."""
    from tunery.compiled.cache import compiled_root
    from tunery.flows.library import data_root, flows_root

    h = home()
    if out in {p.expanduser().resolve() for p in (h.root, h.files, h.models, h.jobs, h.runs, h.cache, h.reports,
                                                   flows_root(), data_root(), compiled_root())}:
        raise InvalidInput(f"{out} is a folder tunery keeps its own state in (TUNERY_HOME is {h.root})",
                           param="output", hint=f"pick a folder of its own for -o, e.g. {h.root / 'exports' / out.name}")


def _check_unregistered(out: Path) -> None:
    """Refuse to replace an export folder that ``tunery deploy DIR`` registered as a model: the
    model (and any deployment of it) would go on serving whatever the new export holds, another
    format or quantization under the old name, or fail on its next load."""
    from tunery.serving import deployments

    users = [r for r in registry.list_models() if r.meta.get("engine") and r.path.resolve() == out]
    if not users:
        return
    deployed = [d.name for d in deployments.list_deployments() if d.model in {r.id for r in users}]
    ids = ", ".join(r.id for r in users)
    steps = [f"`tunery deployments delete {name}`" for name in deployed]
    steps += [f"`tunery models remove {r.id}`" for r in users]
    kept = "the folder is deleted with it, being inside TUNERY_HOME" if registry.deletes_folder(users[0]) \
        else "the folder stays"
    raise Conflict(f"{out} is served as model {ids}" + (f", deployed as {', '.join(deployed)}" if deployed else "")
                   + ", so it is not replaced, with or without --force", param="output",
                   hint=f"{', then '.join(steps)} ({kept}), then export again; or pick another -o folder")


def _calibration_chats(rec: ModelRecord, path: str | Path | None) -> tuple[str, list[Messages]]:
    """Chats for GPTQ: ``path``; else the fine-tune's own training file if it is still stored;
    else the bundled travel training chats. Returns where they came from and the chats."""
    from tunery.data.validate import load_examples

    if path is not None:
        source: str | bytes = str(path)
        label = str(path)
    else:
        source, label = "", ""
        job_id = rec.meta.get("job") if rec.is_adapter or rec.kind == "fine-tuned" else None
        if job_id:
            with contextlib.suppress(TuneryError, OSError):  # the file was deleted: fall back
                from tunery.data import files
                from tunery.jobs.api import get_job

                file_id = get_job(job_id)["training_file"]
                source, label = files.content(file_id), f"training file {file_id} of {job_id}"
        if not source:
            from tunery.examples import TRAVEL_TRAIN

            source, label = str(TRAVEL_TRAIN), "bundled travel chats"
    try:
        convs = load_examples(source, purpose="validation")  # no minimum count, unlike training
    except InvalidInput as e:
        raise InvalidInput(e.message.replace("invalid validation file", f"invalid calibration file {label}", 1),
                           param="calibration", hint=e.hint) from None
    chats = [c.to_dicts() for c in convs]
    return label, chats[:CALIBRATION_CHATS]


def _chat_template(folder: Path) -> str | None:
    p = folder / "chat_template.jinja"
    if p.exists():
        return p.read_text()
    cfg = folder / "tokenizer_config.json"
    return json.loads(cfg.read_text()).get("chat_template") if cfg.exists() else None


def _verify(rec: ModelRecord, fmt: str, quantize: str, export_dir: Path, hf_dir: Path, gguf_file: str | None,
            **kw: Any) -> VerifyReport:
    import torch

    from tunery.compiled.scorers import OnnxScorer, TorchScorer, load_torch
    from tunery.compiled.verify import verify
    from tunery.models.loading import load_model, stop_token_ids

    # the source as tunery serves it: a LoRA fine-tune with its adapter attached, not merged,
    # so the check also proves the merge
    model, tok, _ = load_model(rec, dtype=torch.float32, merge=False)
    source = TorchScorer(model)
    tokenizer_match = None
    if fmt == "onnx":
        exported: Any = OnnxScorer(export_dir)
    elif fmt == "gguf":
        exported = load_torch(export_dir, gguf_file=gguf_file)
        tokenizer_match = _gguf_tokenizer_matches(export_dir, gguf_file or "", tok)
    else:
        exported = load_torch(export_dir)
    return verify(source, exported, tok, fmt=fmt, quantize=quantize, tol=tolerance(fmt, quantize),
                  stop_ids=stop_token_ids(None, hf_dir), tokenizer_match=tokenizer_match, **kw)


def _gguf_tokenizer_matches(folder: Path, gguf_file: str, source_tok: Any) -> bool:
    """Whether the tokenizer rebuilt from the GGUF metadata encodes a sample like the source's."""
    from transformers import AutoTokenizer

    from tunery.chat_template import render
    from tunery.compiled.verify import DEFAULT_TEXTS

    tok = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf_file)
    for msgs in DEFAULT_TEXTS[:2]:
        text = render(source_tok, msgs, generation_prompt=False) + " 2024, café, naïve!"
        if list(tok(text, add_special_tokens=False)["input_ids"]) != list(
                source_tok(text, add_special_tokens=False)["input_ids"]):
            return False
    return True


def _tool_versions(fmt: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    names = {"hf": ["transformers", "peft"], "onnx": ["onnxruntime", "onnxruntime-genai", "onnx"],
             "gguf": ["gguf", "transformers"]}[fmt]
    out = {}
    for n in names:
        with contextlib.suppress(PackageNotFoundError):
            out[n] = version(n)
    return out


_MANIFEST_FIELDS = ("format", "quantize", "source_model")  # what every export writes and a reader needs


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of a finished export folder; NotFound when ``path`` is not one, InvalidInput
    naming the file and the field when the manifest is damaged."""
    p = Path(path).expanduser() / MANIFEST
    if not p.is_file():
        raise NotFound(f"{path} is not a tunery export folder (no {MANIFEST})", param="model",
                       hint="create one with `tunery export MODEL --format onnx -o DIR`")
    from tunery.data.issues import show  # a value as the user wrote it: JSON, not Python's repr

    again = "export the model again with `tunery export`"
    man = read_json_object(p, param="model", hint=again)
    problems = [f"field {key!r} is missing" if key not in man else f"field {key!r} must be a non-empty string, "
                f"not {show(man[key])}" for key in _MANIFEST_FIELDS if not isinstance(man.get(key), str) or not man[key]]
    length = man.get("context_length")
    if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 1):
        problems.append(f"field 'context_length' must be a positive integer, not {show(length)}")
    if problems:
        raise InvalidInput(f"{p}: " + "; ".join(problems), param="model", hint=again)
    return man


def is_export_dir(path: str | Path) -> bool:
    p = Path(path).expanduser()
    return p.is_dir() and (p / MANIFEST).is_file()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._:\-]+", "-", text).strip("-.:") or "export"


def register_export(path: str | Path, name: str | None = None) -> ModelRecord:
    """Register an ONNX export folder as a model served by the ONNX Runtime engine
    (``meta["engine"] == "onnx"``). Idempotent: the same folder under the same name returns the
    existing record. The default name is ``<source>-onnx-<quantize>``, numbered (``-2``, ``-3``, ...)
    when another folder or a deployment has it."""
    folder = Path(path).expanduser().resolve()
    man = read_manifest(folder)
    if man.get("format") != "onnx":
        raise InvalidInput(f"{folder} is a {man.get('format')} export; only ONNX exports can be served by "
                           "tunery's ONNX engine", param="model",
                           hint="export with --format onnx, or deploy the source model itself")
    from tunery.serving import deployments

    default = _slug(f"{man['source_model']}-onnx-{man['quantize']}")
    model_id, n = name or default, 1
    # a default name a deployment has is taken too: the refusal would send the user to
    # `tunery deploy --name`, which names the deployment, not this model
    while (existing := registry.find(model_id)) is not None or (name is None and deployments.find(model_id)):
        if existing is not None and existing.path.resolve() == folder and existing.meta.get("engine") == "onnx":
            return existing
        if name is not None:
            raise Conflict(f"a model named {model_id!r} already exists", param="name",
                           hint="pick another name with --name")
        n += 1  # another folder of the same source and quantization (a copy, an export made again)
        model_id = f"{default}-{n}"
    source = registry.find(man["source_model"])
    spec = source.spec if source is not None else None
    meta = {"engine": "onnx", "export": man.get("quantize"), "source_model": man["source_model"],
            "context_length": man.get("context_length")}
    if spec is not None:
        meta["catalog"] = spec.name
    return registry.register(ModelRecord(
        id=model_id, kind="fine-tuned" if man.get("source_kind") == "fine-tuned" else "base", path=folder,
        source="onnx-export", parent=man["source_model"] if source is not None else None, method="onnx-export",
        meta=meta))

