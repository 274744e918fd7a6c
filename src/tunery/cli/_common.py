"""Shared plumbing for the CLI edge: one rich console, domain errors as one clear line and a
non-zero exit, never a traceback for bad input."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

console = Console(highlight=False, emoji=False)  # ":new" in a model id is not an emoji code
err_console = Console(stderr=True, highlight=False, emoji=False)


class Group(click.Group):
    """A command group whose command list shows each command's whole first sentence, wrapped to the
    terminal, where click cuts it at the column with "...". Its subgroups are of this class too."""

    group_class = type

    def command_summaries(self, ctx: click.Context) -> list[tuple[str, str]]:
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=1000)))
        return rows

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = self.command_summaries(ctx)
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        """A mistyped command is named with the ones it is close to ("flows": did you mean 'flow'?),
        also in a group whose commands are loaded lazily (click looks only at ``self.commands``)."""
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand as e:
            if e.possibilities:
                raise
            raise click.exceptions.NoSuchCommand(e.command_name, possibilities=self.list_commands(ctx),
                                                 ctx=ctx) from None


class DataPath(click.Path):
    """A data file's path; ``-`` is standard input (read once, as from ``/dev/stdin``)."""

    def convert(self, value, param, ctx):
        if value == "-":
            return Path("/dev/stdin")
        return super().convert(value, param, ctx)


def quiet_libraries() -> None:
    """Silence the download/loading progress bars and warnings that third-party libraries print."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def threads_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--threads N``: the one thread-count setting (``TUNERY_NUM_THREADS``), set as soon as the
    option is parsed, so the command and every process it starts train and infer on N threads."""

    def set_threads(ctx: click.Context, param: click.Parameter, value: int | None) -> None:
        from tunery.runtime import use_threads

        use_threads(value)

    return click.option("--threads", type=click.IntRange(min=1), default=None, expose_value=False,
                        callback=set_threads, help=help)


chosen_precision: str | None = None
"""``--precision`` of the running command (ask, chat, eval run, compare): passed to each model it
resolves, so it outranks a deployment's own precision."""


def precision_option(what: str, *, process_default: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--precision int8|int4|fp32``: how local models are served. For a command that asks models
    (``process_default=False``) it is :data:`chosen_precision`, which beats a deployment's own; for
    ``serve`` and ``quickstart`` it is the process default (``TUNERY_PRECISION``, which a
    deployment made with ``--precision`` overrides)."""
    from tunery.compiled.cache import PRECISION_HELP, PRECISIONS

    def set_precision(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
        global chosen_precision
        if process_default:
            if value:
                os.environ["TUNERY_PRECISION"] = value
        else:
            chosen_precision = value  # None when not given: nothing left from an earlier command

    return click.option("--precision", type=click.Choice(PRECISIONS), default=None, expose_value=False,
                        callback=set_precision, help=f"How {what} are served: {PRECISION_HELP} (TUNERY_PRECISION).")


def refuse_overwrite(output: Path, *inputs: Path | None) -> None:
    """Refuse an output file that is one of the command's inputs: writing it would destroy what is read."""
    from tunery.errors import InvalidInput

    if any(p is not None and p.exists() and output.resolve() == p.resolve() for p in inputs):
        raise InvalidInput(f"the output would overwrite the input {output}", param="output", hint="choose another -o")


def utf8_problem(text: str) -> str | None:
    """Why ``text``, from the command line or stdin, is not UTF-8 ("not UTF-8 text (byte 3 ...)"),
    or None: Python hands such bytes on as lone surrogates, which no tokenizer, file or database
    takes."""
    from tunery.errors import json_problem

    try:
        text.encode("utf-8", "surrogateescape").decode("utf-8")
    except UnicodeDecodeError as e:
        return json_problem(e)
    except UnicodeEncodeError:
        return "not valid Unicode (a lone surrogate)"
    return None


def utf8_text(text: str | None, what: str, *, param: str | None = None) -> str | None:
    """``text`` from the command line or stdin, refused (naming ``what``) when its bytes are not
    UTF-8 (:func:`utf8_problem`)."""
    from tunery.errors import InvalidInput

    if text is not None and (why := utf8_problem(text)):
        raise InvalidInput(f"{what} is {why}", param=param, hint="give it as UTF-8 text")
    return text


def fail(message: str, code: int = 1) -> None:
    # one line, not cut at 80 columns where stderr is a log file or a pipe (a terminal wraps it)
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    sys.exit(code)


def run_cli(group: click.Group) -> None:
    from tunery.errors import TuneryError
    from tunery.home import CannotWrite

    quiet_libraries()
    try:
        group.main(standalone_mode=False)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except (TuneryError, CannotWrite) as e:  # CannotWrite: a path that cannot be written, and why
        fail(str(e), 1)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as e:  # a bug, not bad input: say so plainly, traceback on request
        if os.environ.get("TUNERY_DEBUG"):
            raise
        fail(f"unexpected {type(e).__name__}: {e} (run with TUNERY_DEBUG=1 for the traceback, and "
             "please report it)", 2)


@contextmanager
def status(message: str) -> Iterator[Callable[[str], None]]:
    """A spinner while work runs; yields a function that updates its text. Both are plain text (a
    name or path in brackets is not markup)."""
    with console.status(escape(message)) as s:
        yield lambda text: s.update(escape(text))


def system_message(system: str | None, system_from: Path | None) -> str | None:
    """The system message of ``--system`` or ``--system-from`` (a chat JSONL file's), at most one."""
    if system is not None and system_from is not None:
        raise click.UsageError("give --system or --system-from, not both")
    if system_from is not None:
        from tunery.evals import system_from_chat_file

        return system_from_chat_file(system_from)
    return utf8_text(system, "--system", param="system")


def print_fields(fields: dict[str, Any]) -> None:
    """A record as "name  value" lines: values as JSON writes them (lists, objects, null as "-"), not
    Python's repr, and as text, not markup."""
    import json

    width = max((len(k) for k in fields), default=0)
    for k, v in fields.items():
        shown = "-" if v is None else json.dumps(v, ensure_ascii=False, default=str) if isinstance(v, dict | list | tuple) else str(v)
        console.print(f"[bold]{k:>{width}}[/]  {escape(shown)}", soft_wrap=True)


def print_json(obj: Any) -> None:
    import json

    click.echo(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def print_list(items: list[Any], *, as_json: bool, to_json: Callable[[Any], Any], empty: str,
               columns: tuple[str, ...], row: Callable[[Any], tuple[str, ...]]) -> None:
    """A listing command's output: JSON, a hint naming the next step when there is nothing, or a table."""
    from rich.table import Table

    if as_json:
        print_json([to_json(x) for x in items])
        return
    if not items:
        console.print(empty)
        return
    rows = [row(x) for x in items]
    t = Table(show_edge=False, header_style="bold")
    # the first column names the thing (a model id, a job id): always whole, so it can be copied;
    # the other columns give way in a narrow terminal
    t.add_column(columns[0], no_wrap=True, min_width=max(len(r[0]) for r in rows))
    for col in columns[1:]:
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(*r)
    console.print(t)
