"""`tunery data ...`: validate, measure, scrub and split chat JSONL training data."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.markup import escape
from rich.table import Table

from tunery.cli._common import (
    DataPath,
    Group,
    console,
    err_console,
    print_json,
    refuse_overwrite,
    status,
    utf8_text,
)

if TYPE_CHECKING:
    from tunery.data import Issue
    from tunery.errors import InvalidInput

_FILE = DataPath(path_type=Path, dir_okay=True)


@click.group(cls=Group)
def data() -> None:
    """Validate, inspect, scrub, split and synthesize chat and preference JSONL training data.

    \b
    Each line of a file is one example in the OpenAI/Azure chat format:
      {"messages": [{"role": "system", "content": "..."},
                    {"role": "user", "content": "..."},
                    {"role": "assistant", "content": "...", "weight": 1}]}
    optionally with "tools" beside "messages" (docs/tools.md), or one
    preference pair for DPO (docs/dpo.md):
      {"input": {"messages": [...]},
       "preferred_output": [{"role": "assistant", "content": "..."}],
       "non_preferred_output": [{"role": "assistant", "content": "..."}]}

    A FILE of - is read from standard input.
    """


@data.command()
@click.argument("file", type=_FILE)
@click.option("--model", "-m", default=None,
              help="Also count tokens with this model's tokenizer and check examples against its context.")
@click.option("--purpose", type=click.Choice(["training", "validation"]), default="training", show_default=True,
              help="What the file is for: a training file needs at least 10 examples.")
@click.option("--limit", type=click.IntRange(min=0), default=100, show_default=True,
              help="Show at most this many problems (0: all; --json always has all).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def validate(file: Path, model: str | None, purpose: str, limit: int, as_json: bool) -> None:
    """Check FILE and list every problem with its line and field.

    Exits 0 when the file is valid (warnings allowed) and 1 when it has errors.
    """
    from tunery.data import validate_file

    if model:
        with status(f"loading the tokenizer of {model}"):
            report = validate_file(file, model=model, purpose=purpose)
    else:
        report = validate_file(file, purpose=purpose)
    if as_json:
        print_json(report.to_dict())
    else:
        issues = sorted(report.issues, key=lambda i: i.severity != "error")
        shown = issues if limit <= 0 else issues[:limit]
        for issue in shown:
            color = "red" if issue.severity == "error" else "yellow"
            console.print(f"[{color}]{issue.severity}[/]  {escape(issue.format())}", soft_wrap=True)
        if len(shown) < len(issues):
            console.print(f"... and {len(issues) - len(shown)} more (see them all with --limit 0)")
        mark = "[green]✓[/]" if report.ok else "[red]✗[/]"
        console.print(f"{mark} {escape(str(file))}: {report.summary()}", soft_wrap=True)
    sys.exit(0 if report.ok else 1)


@data.command()
@click.argument("file", type=_FILE)
@click.option("--model", "-m", default="smollm2-135m-instruct", show_default=True,
              help="Count tokens with this model's tokenizer and chat template (pulled on first use).")
@click.option("--n-epochs", default=3, show_default=True, type=click.IntRange(min=1),
              help="Epochs for the billed-token estimate.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def stats(file: Path, model: str, n_epochs: int, as_json: bool) -> None:
    """Count examples, turns and tokens in FILE as MODEL sees them.

    Billed tokens follow the OpenAI rule for fine-tuning: every token of every example, once per
    epoch. Trained tokens are those of assistant messages with weight 1 (or no weight), end-of-turn
    marker included. For a file of preference pairs (DPO): the tokens of each pair's prompt and of
    its chosen and rejected answers.
    """
    from tunery.data import read_data, token_stats, validate_bytes
    from tunery.data.preference import file_kind
    from tunery.models import ensure
    from tunery.models.loading import load_tokenizer

    data = read_data(file)  # read once: FILE may be a pipe (/dev/stdin), which a second read finds empty
    if file_kind(data) == "preference":
        _preference_stats(file, data, model, as_json)
        return
    report = validate_bytes(data, purpose="validation")
    if not report.examples:
        raise _nothing_to_count(file, "examples", report.errors)
    with status(f"loading {model}") as update:
        rec = ensure(model, progress=update)
        tokenizer = load_tokenizer(rec)
        update("counting tokens")
        result = token_stats(report.conversations, tokenizer, context_length=rec.context_length,
                             n_epochs=n_epochs)
    _warn_skipped(report.errors, len(report.examples), "examples")
    if as_json:
        print_json({"file": str(file), "model": rec.id, **result.to_dict()})
        return
    t = Table(title=f"{escape(file.name)} with {escape(rec.id)}", show_edge=False, header_style="bold")
    for col, justify in (("", "left"), ("min", "right"), ("median", "right"), ("p95", "right"),
                         ("max", "right")):
        t.add_column(col, justify=justify)
    t.add_row("messages per example", str(result.turns.min), f"{result.turns.median:g}", str(result.turns.p95),
              str(result.turns.max))
    t.add_row("tokens per example", str(result.tokens.min), f"{result.tokens.median:g}", str(result.tokens.p95),
              str(result.tokens.max))
    console.print(t)
    console.print(f"[bold]{'examples':>22}[/]  {result.n_examples}")
    console.print(f"[bold]{'total tokens':>22}[/]  {result.total_tokens:,}")
    console.print(f"[bold]{'trained tokens':>22}[/]  {result.trained_tokens:,}")
    console.print(f"[bold]{'billed tokens':>22}[/]  {result.billed_tokens:,} ({result.total_tokens:,} x "
                  f"{result.n_epochs} epochs)")
    over = f"[yellow]{result.n_over_context}[/]" if result.n_over_context else "0"
    console.print(f"[bold]{'over context':>22}[/]  {over} (context {result.context_length:,} tokens)")


def _nothing_to_count(file: Path, what: str, errors: list[Issue]) -> InvalidInput:
    """The InvalidInput for a file without one valid example (or pair), naming its first problem."""
    import shlex

    from tunery.errors import InvalidInput

    first = f": {errors[0].format()}" if errors else ""
    return InvalidInput(f"{file} has no valid {what}{first}", param="file",
                        hint=f"run `tunery data validate {shlex.quote(str(file))}` for every problem")


def _warn_skipped(errors: list, n_valid: int, what: str) -> None:
    """Say that lines with problems (``errors``, issues) were left out of the counts."""
    if errors:
        bad_lines = len({i.line for i in errors if i.line is not None})
        err_console.print(f"[yellow]warning:[/] {len(errors)} problem(s) on {bad_lines} line(s); only the "
                          f"{n_valid} valid {what} are counted (see `tunery data validate`)")


def _mask(text: str) -> str:
    """Enough of a finding to recognise it, without printing the personal data itself."""
    return text[:2] + "*" * max(len(text) - 4, 1) + text[-2:] if len(text) > 4 else "*" * len(text)



def _preference_stats(file: Path, data: bytes, model: str, as_json: bool) -> None:
    """Tokens of a preference (DPO) file (``data``, its bytes): prompt, chosen and rejected answers per pair."""
    from tunery.data.preference import preference_stats, read_pairs
    from tunery.models import ensure
    from tunery.models.loading import load_tokenizer

    pairs, errors = read_pairs(data)
    if not pairs:
        raise _nothing_to_count(file, "preference pairs", errors)
    with status(f"loading {model}") as update:
        rec = ensure(model, progress=update)
        result = preference_stats(pairs, load_tokenizer(rec))
    _warn_skipped(errors, len(pairs), "pairs")
    if as_json:
        print_json({"file": str(file), "model": rec.id, "format": "preference", **result.to_dict()})
        return
    t = Table(title=f"{escape(file.name)} (preference pairs) with {escape(rec.id)}", show_edge=False,
              header_style="bold")
    for col, justify in (("tokens per pair", "left"), ("min", "right"), ("median", "right"), ("p95", "right"),
                         ("max", "right")):
        t.add_column(col, justify=justify)
    for name, s in (("prompt", result.prompt), ("chosen", result.chosen), ("rejected", result.rejected)):
        t.add_row(name, str(s.min), f"{s.median:g}", str(s.p95), str(s.max))
    console.print(t)
    console.print(f"[bold]{'pairs':>22}[/]  {result.n_pairs}")
    console.print(f"[bold]{'total tokens':>22}[/]  {result.total_tokens:,}")

@data.command()
@click.argument("file", type=_FILE)
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False),
              help="Where to write the scrubbed copy (required unless --check).")
@click.option("--check", is_flag=True, help="Only report; exit 1 when personal data is found.")
@click.option("--force", is_flag=True, help="Replace the output file if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def scrub(file: Path, output: Path | None, check: bool, force: bool, as_json: bool) -> None:
    """Replace personal data in messages and tool calls with placeholders such as [EMAIL] and [PHONE].

    Finds e-mail addresses, phone numbers, card numbers (Luhn), IBANs, IP addresses, US SSNs and
    UK National Insurance numbers, in message contents, tool-call arguments and tool results (whose
    JSON stays valid). Lines without findings are copied unchanged.
    """
    from tunery.data import check_file, scrub_file
    from tunery.errors import InvalidInput

    if not check and output is None:
        raise InvalidInput("give an output file with -o OUT, or --check to only report", param="output")
    if check and output is not None:  # else -o is ignored without a word, and no copy is written
        raise click.UsageError("--check only reports and writes nothing: leave out -o OUT, or --check to write "
                               "the scrubbed copy")
    if output is not None:
        refuse_overwrite(output, file)
    report = check_file(file) if check else scrub_file(file, output, force=force)
    if as_json:
        print_json(report.to_dict())
    else:
        for f in report.findings:
            console.print(f"line {f.line}, {f.field}: [yellow]{f.match.kind}[/] {escape(_mask(f.match.text))}",
                          soft_wrap=True)
        if report.plain_text_lines:
            n = len(report.plain_text_lines)
            err_console.print(f"[yellow]warning:[/] {n} line(s) are not chat examples and were scanned as plain "
                              "text (see `tunery data validate`)")
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(report.counts.items())) or "nothing"
        console.print(f"found {counts} on {len(report.lines_with_pii)} of {report.n_lines} lines")
        if not check:
            console.print(f"[green]wrote[/] {escape(str(output))}")
    if check and report.found:
        sys.exit(1)


@data.command()
@click.argument("file", type=_FILE)
@click.option("--validation-fraction", "-f", type=float, default=0.1, show_default=True,
              help="Share of the examples that goes to the validation file, between 0 and 1.")
@click.option("--seed", type=int, default=42, show_default=True, help="The same seed gives the same split.")
@click.option("--output-prefix", "-o", "prefix", default=None,
              help="Write PREFIX.train.jsonl and PREFIX.valid.jsonl (default: beside FILE, named after it).")
@click.option("--force", is_flag=True, help="Replace the output files if they exist.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def split(file: Path, validation_fraction: float, seed: int, prefix: str | None, force: bool, as_json: bool) -> None:
    """Split FILE into a training and a validation file, reproducibly."""
    from tunery.data import default_outputs, split_file
    from tunery.data.issues import plural

    if file.is_dir():  # -o would not help: split reads one file
        raise click.BadParameter(f"{file} is a folder: give the JSONL file to split", param_hint="FILE")
    if prefix is None and (file.parent in (Path("/dev"), Path("/dev/fd"), Path("/proc/self/fd"))
                           or file.exists() and not file.is_file()):
        # standard input or a pipe: outputs named after it would go to /dev
        raise click.UsageError(f"{file} is not a file to name the outputs after: give -o PREFIX")
    out_train, out_valid = default_outputs(file, prefix)
    result = split_file(file, validation_fraction=validation_fraction, seed=seed, out_train=out_train,
                        out_valid=out_valid, force=force)
    if as_json:
        print_json(result.to_dict())
        return
    console.print(f"[green]wrote[/] {escape(str(result.train_path))} ({result.n_train} example{plural(result.n_train)}) "
                  f"and {escape(str(result.valid_path))} ({result.n_valid} example{plural(result.n_valid)})")


@data.command()
@click.option("--teacher", required=True, metavar="MODEL_OR_ENDPOINT",
              help="The teacher: a tunery model or deployment, or MODEL@http(s)://host/v1 for any "
                   "OpenAI-compatible endpoint (key from OPENAI_API_KEY or TUNERY_ENDPOINT_API_KEY).")
@click.option("--system", default=None,
              help="The system message the examples are written under (this or --system-from is required).")
@click.option("--system-from", type=_FILE, default=None, help="Take the system message from a chat JSONL file.")
@click.option("--topics", type=_FILE, required=True, help="Topics, one per line (or JSONL with 'topic').")
@click.option("--n", "n", type=click.IntRange(min=1), required=True, help="Examples to generate.")
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Where to write the examples (chat JSONL).")
@click.option("--seed", default=0, show_default=True, help="Seed for topic order and sampling.")
@click.option("--temperature", type=click.FloatRange(0, 2), default=0.9, show_default=True,
              help="Teacher's sampling temperature.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=256, show_default=True,
              help="Longest answer, in tokens.")
@click.option("--force", is_flag=True, help="Replace the output file if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def synth(teacher: str, system: str | None, system_from: Path | None, topics: Path, n: int, output: Path,
          seed: int, temperature: float, max_tokens: int, force: bool, as_json: bool) -> None:
    """Generate training examples from a teacher model: a question per topic, answered under the
    system message; duplicates and invalid examples are dropped and reported."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from tunery.chat import GenerationParams
    from tunery.data.synth import load_topics, synthesize, write_examples
    from tunery.data.text import refuse_existing
    from tunery.errors import InvalidInput
    from tunery.serving.resolve import get_chat_model

    if (system is None) == (system_from is None):
        raise click.UsageError("give exactly one of --system or --system-from")
    # before the teacher is asked anything: its answers must not be lost, nor a file overwritten
    refuse_overwrite(output, topics, system_from)
    refuse_existing([output], force=force, hint="choose another -o")
    if system_from is not None:
        from tunery.evals import system_from_chat_file

        system = system_from_chat_file(system_from)
    system = utf8_text(system, "--system", param="system")
    topic_list = load_topics(topics)
    model = get_chat_model(teacher)
    # the bar goes to stderr: stdout holds the result alone (the --json output too)
    with Progress(TextColumn("asking the teacher"), BarColumn(), MofNCompleteColumn(), console=err_console,
                  transient=True) as bar:
        task = bar.add_task("synth", total=n)
        report = synthesize(model, system=system, topics=topic_list, n=n, seed=seed,
                            params=GenerationParams(temperature=temperature, max_tokens=max_tokens),
                            progress=lambda: bar.advance(task))
    if report.kept:  # no empty file that looks like a result
        write_examples(report, output)
    if as_json:
        print_json({**report.to_dict(), "output": str(output) if report.kept else None})
    else:
        console.print(f"wrote {report.kept} of {n} example(s) to {escape(str(output))}" if report.kept
                      else f"kept none of {n} example(s); {escape(str(output))} was not written")
        for reason, count in report.dropped.most_common():
            console.print(f"  [yellow]dropped {count}[/]: {escape(reason)} "
                          f"(e.g. {escape(repr(report.drop_examples[reason]))})")
        if report.kept:
            console.print(f"next: [bold]tunery data validate {escape(str(output))}[/]")
    if not report.kept:
        raise InvalidInput(f"the teacher {teacher} gave no usable example", param="teacher",
                           hint="see the reasons above; try another --teacher, --temperature or --max-tokens")
