"""`tunery flow ...` and `tunery run ...`: Prompt flow's ``pf flow`` and ``pf run`` commands,
thin maps onto :mod:`tunery.flows`.

Like ``pf``, options that take ``key=value`` pairs accept several after one flag:
``--inputs a=1 b=2`` is ``--inputs a=1 --inputs b=2``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from tunery.cli._common import Group, console, err_console, print_json, print_list, utf8_problem

_GREEDY = ("--inputs", "--column-mapping", "--connections")


class _PairsCommand(click.Command):
    """Expands ``--inputs a=1 b=2`` into ``--inputs a=1 --inputs b=2`` before click parses."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        out: list[str] = []
        i = 0
        while i < len(args):
            a = args[i]
            if a == "--":
                out += args[i:]
                break
            if a in _GREEDY and i + 1 < len(args):
                out += [a, args[i + 1]]
                i += 2
                while i < len(args) and not args[i].startswith("-") and "=" in args[i]:
                    out += [a, args[i]]
                    i += 1
                continue
            out.append(a)
            i += 1
        return super().parse_args(ctx, out)


def _utf8(value: Any, flag: str, *, path: bool = False) -> None:
    """Refuse a value given on the command line whose bytes are not UTF-8 (a path included): Python
    hands them on as lone surrogates, which no run file, database or model takes."""
    if value is not None and (why := utf8_problem(str(value))):
        fix = "rename it to a UTF-8 name" if path else "give it as UTF-8 text"
        raise click.BadParameter(f"{why}; {fix}", param_hint=flag)


def _pairs(values: tuple[str, ...], flag: str) -> dict[str, str]:
    out = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{v!r} is not KEY=VALUE", param_hint=flag)
        _utf8(v, flag)
        out[key.strip()] = value
    return out


def _connections(values: tuple[str, ...]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for key, value in _pairs(values, "--connections").items():
        node, dot, setting = key.partition(".")
        if not dot or not node or not setting:
            raise click.BadParameter(f"{key!r} must be NODE.connection, NODE.deployment_name or NODE.model",
                                     param_hint="--connections")
        out.setdefault(node, {})[setting] = value
    return out


def _short(value: Any, limit: int = 160) -> str:
    from tunery.flows.executor import jsonable

    text = value if isinstance(value, str) else json.dumps(jsonable(value), ensure_ascii=False, default=str)
    text = text.replace("\n", "⏎ ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(message)}")


_flow_opt = click.option("--flow", "flow_path", required=True, type=click.Path(path_type=Path),
                         help="The flow folder (holding flow.dag.yaml) or the yaml file.")
_variant_opt = click.option("--variant", help="Use another variant of a node, e.g. '${summarize.variant_1}'.")
_conn_opt = click.option("--connections", "connections", multiple=True, metavar="NODE.KEY=VALUE",
                         help="Override an llm node's connection, deployment_name or model, e.g. "
                         "classify.deployment_name=travel-tuned.")
_default_model_opt = click.option("--default-model", help="Model answering deployment names tunery does not know "
                                  "(default: $TUNERY_FLOW_DEFAULT_MODEL or smollm2-135m-instruct).")


# ---- tunery flow ---------------------------------------------------------------------------

@click.group(cls=Group)
def flow() -> None:
    """Test, validate and manage prompt flows (Prompt flow's flow.dag.yaml) and their connections."""


@flow.command()
@_flow_opt
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def validate(flow_path: Path, as_json: bool) -> None:
    """Check a flow: its file, references, graph, templates and Python code; lists every problem."""
    from tunery.flows import validate_flow

    report = validate_flow(flow_path)
    if as_json:
        print_json({"file": str(report.file), "ok": report.ok,
                    "problems": [{"where": p.where, "field": p.field, "message": p.message, "severity": p.severity}
                                 for p in report.problems]})
    else:
        for p in report.problems:
            color = "red" if p.severity == "error" else "yellow"
            console.print(f"[{color}]{p.severity}:[/] {escape(f'{report.file}: {p}')}")  # as InvalidFlow names them
        if report.ok:
            nodes = len(report.flow.nodes) if report.flow else 0
            console.print(f"[green]valid:[/] {escape(str(report.file))} ({nodes} nodes)")
    if not report.ok:
        raise SystemExit(1)


@flow.command(name="test", cls=_PairsCommand)
@_flow_opt
@click.option("--inputs", multiple=True, metavar="KEY=VALUE", help="Flow inputs (defaults fill the rest); with "
              "--node also the node's own inputs, or NODE.output=VALUE for a node it depends on.")
@_variant_opt
@click.option("--node", help="Test only this node (and the nodes it needs).")
@_conn_opt
@_default_model_opt
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def test_cmd(flow_path: Path, inputs: tuple[str, ...], variant: str | None, node: str | None,
             connections: tuple[str, ...], default_model: str | None, as_json: bool) -> None:
    """Run a flow once on one line of inputs and print every node's output."""
    from tunery.flows import test_flow

    values: dict[str, Any] = _pairs(inputs, "--inputs")
    result = test_flow(flow_path, values, variant=variant, node=node, connections=_connections(connections),
                       default_model=default_model, on_warning=None if as_json else _warn)
    if as_json:
        print_json(result.to_dict())
    else:
        kinds = {n.name: n.type for n in result.flow.nodes}
        t = Table(show_edge=False, header_style="bold")
        for col in ("node", "type", "status", "time", "output"):
            t.add_column(col, overflow="fold")
        for run in [*result.line.nodes.values(), *(result.aggregation.nodes.values() if result.aggregation else [])]:
            out = run.error["message"] if run.error else _short(run.output, 400)
            style = {"Failed": "red", "Bypassed": "dim"}.get(run.status, "")
            t.add_row(escape(run.node), kinds.get(run.node, ""), f"[{style}]{run.status}[/]" if style else run.status,
                      f"{run.end - run.start:.2f}s", escape(out))
        console.print(t)
        if result.line.logs:
            console.print("[bold]printed:[/]\n" + escape(result.line.logs.rstrip()))
        if result.line.status == "Completed" and node is None:
            console.print("[bold]outputs:[/] " + escape(json.dumps(result.line.outputs, ensure_ascii=False, default=str)))
        if result.aggregation is not None and result.aggregation.metrics:
            console.print("[bold]metrics:[/] " + escape(json.dumps(result.aggregation.metrics)))
    if result.line.status != "Completed":
        err = result.line.error or {}
        where = ", ".join(x for x in (f"node '{err['node']}'" if err.get("node") else "", err.get("field") or "") if x)
        err_console.print(f"[bold red]error:[/] {escape(f'{where}: ' if where else '')}{escape(str(err.get('message')))}")
        raise SystemExit(1)


@flow.command(name="set-default-variant")
@_flow_opt
@click.argument("node")
@click.argument("variant")
def set_default_variant_cmd(flow_path: Path, node: str, variant: str) -> None:
    """Make VARIANT the default variant of NODE in the flow file (only that line changes)."""
    from tunery.flows import set_default_variant

    file = set_default_variant(flow_path, node, variant)
    console.print(f"[green]{node}[/] now defaults to [bold]{variant}[/] in {file}")


@flow.command()
@click.argument("dest", type=click.Path(path_type=Path), default=Path("flows"))
def examples(dest: Path) -> None:
    """Copy the bundled example flows (classification, summarization, evaluation) into DEST.

    DEST defaults to ./flows and must be empty or new."""
    import tunery

    src = Path(tunery.__file__).parent / "examples" / "flows"
    if dest.exists() and not dest.is_dir():
        raise click.UsageError(f"{dest} is a file, not a folder; pick a new or empty folder")
    if dest.exists() and any(dest.iterdir()):
        raise click.UsageError(f"{dest} exists and is not empty; pick another folder")
    from tunery.home import CannotWrite

    try:
        shutil.copytree(src, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    except OSError as e:  # a folder that cannot be made or written: one line naming it, not a traceback
        raise CannotWrite(dest, e) from e
    console.print(f"copied the example flows to {dest}; walk through {dest / 'README.md'}")


@flow.group()
def connection() -> None:
    """Named connections for llm nodes (default: the local tunery models)."""


@connection.command("add")
@click.argument("name")
@click.option("--type", "type_", type=click.Choice(["openai", "tunery"]), default="openai", show_default=True)
@click.option("--base-url", help="The endpoint, e.g. http://localhost:8000/v1 (openai type).")
@click.option("--api-key-env", help="Environment variable holding the API key, e.g. OPENAI_API_KEY.")
def connection_add(name: str, type_: str, base_url: str | None, api_key_env: str | None) -> None:
    """Add (or replace) connection NAME."""
    from tunery.flows import add_connection

    c = add_connection(name, type_, base_url, api_key_env)
    console.print(f"[green]saved:[/] {c.name} ({c.type}{' ' + c.base_url if c.base_url else ''})")


@connection.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def connection_list(as_json: bool) -> None:
    """List configured connections."""
    from tunery.flows import list_connections

    print_list(list(list_connections().values()), as_json=as_json, to_json=lambda c: c.to_dict(),
               empty="No connections configured: every node's connection means the local tunery models.",
               columns=("name", "type", "base url", "key from"),
               row=lambda c: (c.name, c.type, c.base_url or "", f"${c.api_key_env}" if c.api_key_env else ""))


@connection.command("remove")
@click.argument("name")
def connection_remove(name: str) -> None:
    """Remove connection NAME."""
    from tunery.flows import remove_connection

    remove_connection(name)
    console.print(f"removed {name}")


# ---- tunery run ----------------------------------------------------------------------------

@click.group(cls=Group)
def run() -> None:
    """Batch-run flows over JSONL data; inspect, compare and visualize runs."""


@run.command(cls=_PairsCommand)
@click.option("--file", "-f", "run_file", type=click.Path(path_type=Path), help="A run.yml (Prompt flow's run file: flow, data, column_mapping, variant, connections, "
              "name, ...); an option given here overrides the file's field.")
@click.option("--flow", "flow_path", help="The flow folder.")
@click.option("--data", help="The JSONL (or CSV) data file.")
@click.option("--column-mapping", multiple=True, metavar="INPUT=${data.COL}",
              help="Map flow inputs to ${data.COL}, ${run.outputs.X}, ${run.inputs.X} or a constant.")
@_variant_opt
@_conn_opt
@click.option("--run", "parent", help="A previous run whose lines this run grades (an evaluation run).")
@click.option("--name", "-n", help="The run's name (default: FLOW_VARIANT_TIMESTAMP).")
@click.option("--display-name", help="A friendlier name to show.")
@click.option("--description", help="What this run is for.")
@click.option("--workers", type=int, help="Lines run in parallel (default 4, or $TUNERY_FLOW_WORKERS).")
@click.option("--line-timeout", type=float, help="Seconds before a line fails (default 600).")
@_default_model_opt
@click.option("--resume-from", help="Rerun only the failed lines of this run, into a new run.")
@click.option("--stream", is_flag=True, help="Print each line as it finishes instead of a progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the finished run as JSON.")
def create(run_file: Path | None, flow_path: str | None, data: str | None, column_mapping: tuple[str, ...],
           variant: str | None, connections: tuple[str, ...], parent: str | None, name: str | None,
           display_name: str | None, description: str | None, workers: int | None, line_timeout: float | None,
           default_model: str | None, resume_from: str | None, stream: bool, as_json: bool) -> None:
    """Run a flow over every line of a data file (or grade a previous run with --run)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tunery.flows import RunSpec, create_run, load_run_file

    for flag, value in (("--file", run_file), ("--flow", flow_path), ("--data", data)):
        _utf8(value, flag, path=True)
    for flag, value in (("--variant", variant), ("--run", parent), ("--name", name), ("--display-name", display_name),
                        ("--description", description), ("--default-model", default_model),
                        ("--resume-from", resume_from)):
        _utf8(value, flag)
    spec = load_run_file(run_file) if run_file else RunSpec()
    spec = spec.merged(flow=flow_path, data=data, column_mapping=_pairs(column_mapping, "--column-mapping"),
                       variant=variant, connections=_connections(connections), run=parent, name=name,
                       display_name=display_name, description=description, workers=workers,
                       line_timeout=line_timeout, default_model=default_model, resume_from=resume_from)

    def show_line(line) -> None:
        if line.status == "Completed":
            err_console.print(f"line {line.line_number}: [green]Completed[/] in {line.duration:.2f}s "
                              + escape(_short(line.outputs)))
        else:
            err_console.print(f"line {line.line_number}: [red]{line.status}[/] "
                              + escape(str((line.error or {}).get("message"))))

    if stream:
        record = create_run(spec, on_line=show_line, on_warning=_warn)
    else:
        columns = (TextColumn("[bold]lines"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("[red]{task.fields[failed]} failed"), TextColumn("{task.fields[rate]}"),
                   TimeElapsedColumn())
        bar = Progress(*columns, console=err_console)
        task = bar.add_task("lines", total=None, failed=0, rate="")

        def progress(p) -> None:
            if not bar.live.is_started:  # shown once the run has really started
                bar.start()
            bar.update(task, total=p.total, completed=p.done, failed=p.failed,
                       rate=f"{p.rate:.2f} lines/s" if p.rate else "")

        try:
            record = create_run(spec, on_progress=progress, on_warning=lambda m: bar.console.print(
                f"[yellow]warning:[/] {escape(m)}"))
        finally:
            bar.stop()
    if as_json:
        print_json(record.to_dict())
    else:
        m = record.meta
        color = "green" if record.status == "Completed" else "red"
        console.print(f"run [bold]{escape(record.name)}[/]: [{color}]{record.status}[/], {m.get('total_lines', 0)} lines, "
                      f"{m.get('failed_lines', 0)} failed, {m.get('duration', 0):.1f}s")
        if record.metrics:
            console.print("metrics: " + escape(json.dumps(record.metrics)))
        if m.get("error"):
            err_console.print(f"[red]error:[/] {escape(str(m['error']))}")
        if m.get("failed_lines"):
            console.print(f"rerun the failed lines with: tunery run create --resume-from {escape(record.name)}")
        console.print(f"details: tunery run show-details -n {escape(record.name)}")
    if record.status != "Completed":
        raise SystemExit(1)


@run.command("list")
@click.option("--max-results", "-r", type=click.IntRange(min=1), default=50, show_default=True,
              help="How many runs to list.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_cmd(max_results: int, as_json: bool) -> None:
    """List runs, newest first."""
    from tunery.flows import list_runs

    runs = list_runs(max_results)
    if as_json:
        print_json([r.to_dict() for r in runs])
        return
    if not runs:
        console.print("No runs yet. Start one with [bold]tunery run create --flow DIR --data FILE.jsonl[/].")
        return
    t = Table(show_edge=False, header_style="bold")
    for col in ("name", "status", "flow", "variant", "lines", "failed", "graded run", "metrics"):
        t.add_column(col, overflow="fold")
    for r in runs:
        t.add_row(*(escape(str(x)) for x in (
            r.name, r.status, r.meta.get("flow_name") or r.flow, r.variant or "", r.meta.get("total_lines", ""),
            r.meta.get("failed_lines", ""), r.parent or "", ", ".join(f"{k}={v:.4g}" for k, v in r.metrics.items()))))
    console.print(t)


_name_opt = click.option("--name", "-n", "name", required=True, help="The run's name.")


@run.command()
@_name_opt
def show(name: str) -> None:
    """Print a run's properties as JSON."""
    from tunery.flows import get_run

    print_json(get_run(name).to_dict())


@run.command("show-details")
@_name_opt
@click.option("--max-results", "-r", type=click.IntRange(min=1), default=100, show_default=True,
              help="How many lines to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with node outputs and logs).")
def show_details(name: str, max_results: int, as_json: bool) -> None:
    """Print a run's lines: inputs, outputs, status and errors."""
    from tunery.flows import get_run, load_details

    lines = load_details(get_run(name))[:max_results]
    if as_json:
        print_json(lines)
        return
    ins = list(dict.fromkeys(k for ln in lines for k in ln.get("inputs") or {}))
    outs = list(dict.fromkeys(k for ln in lines for k in ln.get("outputs") or {}))
    t = Table(show_edge=False, header_style="bold", show_lines=True)
    for col in ("#", "status", *(f"inputs.{k}" for k in ins), *(f"outputs.{k}" for k in outs), "error"):
        t.add_column(escape(col), overflow="fold")
    for ln in lines:
        t.add_row(str(ln["line_number"]), ln["status"],
                  *(escape(_short((ln.get("inputs") or {}).get(k, ""), 80)) for k in ins),
                  *(escape(_short((ln.get("outputs") or {}).get(k, ""), 80)) for k in outs),
                  escape((ln.get("error") or {}).get("message") or ""))
    console.print(t)


@run.command("show-metrics")
@_name_opt
def show_metrics(name: str) -> None:
    """Print the metrics a run's aggregation nodes logged, as JSON."""
    from tunery.flows import get_run, load_metrics

    print_json(load_metrics(get_run(name)))


@run.command()
@_name_opt
def logs(name: str) -> None:
    """Print a run's log: warnings, failed lines and what flow code printed."""
    from tunery.flows import get_run, read_logs

    click.echo(read_logs(get_run(name)) or "(empty)")


@run.command()
@click.option("--names", "--name", "-n", "names", required=True, help="Runs to compare, comma-separated: a,b,c.")
@click.option("--html-path", type=click.Path(path_type=Path),
              help="Where to write the page (default: TUNERY_HOME/reports/visualize-NAMES-TIME.html).")
@click.option("--no-open", is_flag=True, help="Do not open the page in a browser.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison data as JSON instead.")
def visualize(names: str, html_path: Path | None, no_open: bool, as_json: bool) -> None:
    """Compare runs line by line in a self-contained HTML page (metrics, outputs, grades)."""
    from tunery.flows import compare_runs
    from tunery.flows import visualize as do_visualize

    selected = [n.strip() for n in names.split(",") if n.strip()]
    if as_json:
        print_json(compare_runs(selected))
        return
    path = do_visualize(selected, html_path, open_browser=not no_open)
    console.print(f"wrote {path}")
