"""`tunery eval run|list|pairs` and `tunery compare`: thin maps onto ``tunery.evals``."""

from __future__ import annotations

import os
from pathlib import Path

import click

from tunery.cli._common import (
    Group,
    console,
    err_console,
    precision_option,
    print_json,
    refuse_overwrite,
    system_message,
)

DEFAULT_COMPARE_EVALUATORS = ("recommends", "ends_with_question")


def _load_models(refs: tuple[str, ...]) -> dict:
    # looked up on the module at call time, so tests can swap in scripted models
    from tunery.serving import resolve

    if len(set(refs)) != len(refs):
        raise click.UsageError("a model is named twice")
    from tunery.cli import _common

    return {ref: resolve.get_chat_model(ref, precision=_common.chosen_precision) for ref in refs}


def _run(build_report, total_hint: int):
    """Run with a progress bar over the answers being generated, on stderr: stdout holds the result
    alone (the --json output too)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True) as bar:
        task = bar.add_task("generating", total=total_hint)

        def progress(model: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=f"answering with {model}")
            if done == total:
                bar.update(task, description="scoring")

        return build_report(progress)


def _common_options(f):
    options = [
        click.option("--system", help="System message given to every model with each question."),
        click.option("--system-from", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="Take the system message from a chat JSONL file (e.g. the training data)."),
        click.option("--evaluator", "-e", "evaluators", multiple=True, metavar="NAME[:OPTIONS]",
                     help="An evaluator, repeatable: e.g. recommends, ends_with_question, max_words:80, "
                          "judge:coherence@MODEL (see `tunery eval list`). A trailing [COLUMN=VALUE] scores "
                          "only the rows with that value, e.g. 'refuses[expect=answer]'."),
        click.option("--question-key", default="question", show_default=True,
                     help="Column of the data file that holds the question."),
        click.option("--max-tokens", type=click.IntRange(1), default=256, show_default=True,
                     help="Longest answer, in tokens."),
        click.option("--temperature", type=click.FloatRange(0.0, 2.0), default=0.0, show_default=True,
                     help="Sampling temperature; 0 is greedy (reproducible)."),
        click.option("--limit", type=click.IntRange(1), help="Use only the first N questions."),
        click.option("--out", type=click.Path(file_okay=False, path_type=Path),
                     help="Report folder (default TUNERY_HOME/reports/<time>-<models>)."),
        click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON instead of tables."),
        precision_option("the local models evaluated"),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.group("eval", cls=Group)
def eval_group() -> None:
    """Evaluate models on a dataset and write a report; make DPO pairs from a model's own answers."""


@eval_group.command("run")
@click.option("--data", "data", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSONL file, one question per line (other columns, e.g. ground_truth, feed evaluators; an "
                   "integer 'seed' column seeds that row's sampling).")
@click.option("--model", "-m", "models", required=True, multiple=True,
              help="Model to evaluate, repeatable: a tunery model or deployment, or NAME@http://host/v1.")
@_common_options
def run_cmd(data: Path, models: tuple[str, ...], system: str | None, system_from: Path | None,
            evaluators: tuple[str, ...], question_key: str, max_tokens: int, temperature: float,
            limit: int | None, out: Path | None, as_json: bool) -> None:
    """Ask each model every question, score the answers and write a report folder.

    \b
    The folder holds results.jsonl (every answer with its scores and reasons),
    summary.json (mean, pass rate and 95% bootstrap interval per model and metric)
    and report.html (charts and the answers side by side; opens offline).

    \b
    Example:
      tunery eval run --data questions.jsonl -m smollm2-135m-instruct -m my-tuned \\
        --system-from train.jsonl -e recommends -e ends_with_question -e max_words:80
    """
    from tunery.chat import GenerationParams
    from tunery.evals import load_questions, parse_evaluators, render_terminal_table, run_eval

    questions = load_questions(data, question_key, limit=limit)
    evals = parse_evaluators(evaluators)
    sys_msg = system_message(system, system_from)
    chat_models = _load_models(models)
    params = GenerationParams(temperature=temperature, max_tokens=max_tokens)
    report = _run(lambda progress: run_eval(questions, chat_models, evals, system=sys_msg, question_key=question_key,
                                            params=params, out_dir=out, progress=progress),
                  len(questions) * len(chat_models))
    if as_json:
        print_json(report.summary_json() | {"report_dir": str(report.paths["html"].parent)})
    else:
        render_terminal_table(report, console)


@eval_group.command("list")
def list_cmd() -> None:
    """List the evaluators and their options.

    Any evaluator can be limited to the rows whose column holds a value with a trailing
    [COLUMN=VALUE], e.g. recommends[expect=decline] or refuses[expect=answer].
    """
    from rich.table import Table

    from tunery.evals import EVALUATORS

    t = Table(show_lines=True, header_style="bold")
    t.add_column("evaluator", no_wrap=True)
    t.add_column("what it checks")
    for name, cls in EVALUATORS.items():
        t.add_row(name, cls.description)
    console.print(t)


@eval_group.command("pairs")
@click.option("--data", "data", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSONL file, one question per line; other columns feed the evaluators and their "
                   "[COLUMN=VALUE] subsets (e.g. expect: decline | answer).")
@click.option("--model", "-m", "model", required=True,
              help="The model whose answers make the pairs: the one a DPO job will start from.")
@click.option("--evaluator", "-e", "evaluators", multiple=True, required=True, metavar="NAME[:OPTIONS]",
              help="A pass/fail check, repeatable, with an optional [COLUMN=VALUE] subset, e.g. "
                   "'recommends[expect=decline]', 'refuses[expect=answer]' (see `tunery eval list`).")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the pairs (preference JSONL, for `tunery finetune --method dpo`).")
@click.option("--system", help="System message given with each question (and written into each pair).")
@click.option("--system-from", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Take the system message from a chat JSONL file (e.g. the training data).")
@click.option("--question-key", default="question", show_default=True,
              help="Column of the data file that holds the question.")
@click.option("--samples", type=click.IntRange(2, 64), default=4, show_default=True,
              help="Answers sampled per question.")
@click.option("--per-question", type=click.IntRange(1, 32), default=2, show_default=True,
              help="At most this many pairs per question, each with a different failing answer.")
@click.option("--temperature", type=click.FloatRange(0.0, 2.0, min_open=True), default=0.6, show_default=True,
              help="Sampling temperature. Small models write nonsense at 1.0; 0.6 kept SmolLM2-135M readable.")
@click.option("--max-tokens", type=click.IntRange(1), default=256, show_default=True,
              help="Longest answer, in tokens; an answer that reaches it counts as failing.")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=0, show_default=True,
              help="Seed of the sampling and of the pairing: the same seed, model and data give the same pairs.")
@click.option("--limit", type=click.IntRange(1), help="Use only the first N questions.")
@click.option("--force", is_flag=True, help="Replace the output file if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@precision_option("local models")
def pairs_cmd(data: Path, model: str, evaluators: tuple[str, ...], output: Path, system: str | None,
              system_from: Path | None, question_key: str, samples: int, per_question: int, temperature: float,
              max_tokens: int, seed: int, limit: int | None, force: bool, as_json: bool) -> None:
    """Make DPO preference pairs from MODEL's own answers.

    Each question is asked --samples times; every answer is scored with the evaluators that apply
    to its row. An answer that passes all of them is paired, as the preferred one, with an answer
    that fails one (or runs to --max-tokens). Both sides are the model's own words, so DPO moves
    the behaviour the checks measure rather than the wording.

    Pick checks that say what a good answer does, not only what it avoids: with `recommends`
    alone, an answer that talks around a request passes; `declines[expect=decline]` makes the
    preferred answer to a question to decline say no.

    \b
    Example (the travel task: where a named business is asked for, name none and say no; elsewhere,
    no refusals):
      tunery eval pairs --data prompts.jsonl -m ft:smollm2-135m-instruct:travel:ID \\
        --system-from train.jsonl -e 'recommends[expect=decline]' -e 'declines[expect=decline]' \\
        -e 'refuses[expect=answer]' -e 'answers[expect=answer]' -e ends_with_question -o pairs.jsonl
      tunery finetune pairs.jsonl --method dpo -m ft:smollm2-135m-instruct:travel:ID
    """
    from rich.markup import escape

    from tunery.chat import GenerationParams
    from tunery.data.text import refuse_existing
    from tunery.data.validate import MIN_TRAINING_EXAMPLES
    from tunery.errors import InvalidInput
    from tunery.evals import load_questions, parse_evaluators
    from tunery.evals.onpolicy import RAN_ON, make_pairs, write_pairs

    refuse_overwrite(output, data, system_from)
    refuse_existing([output], force=force, hint="choose another -o")
    if not output.resolve().parent.is_dir() or not os.access(output.resolve().parent, os.W_OK):
        raise InvalidInput(f"cannot write {output}: its folder does not exist or is not writable", param="output")
    questions = load_questions(data, question_key, limit=limit)
    evals = parse_evaluators(evaluators)
    sys_msg = system_message(system, system_from)
    chat_model = _load_models((model,))[model]
    params = GenerationParams(temperature=temperature, max_tokens=max_tokens)
    report = _run(lambda progress: make_pairs(chat_model, questions, evals, system=sys_msg,
                                              question_key=question_key, samples=samples,
                                              per_question=per_question, params=params, seed=seed,
                                              progress=progress),
                  len(questions) * samples)
    write_pairs(report, output)
    if as_json:
        print_json(report.to_dict() | {"output": str(output)})
        return
    counts = report.to_dict()
    console.print(f"{counts['answers']} answers to {report.questions} questions: {report.passed} passed every check",
                  markup=False)
    for check, count in report.failures.most_common():
        console.print(f"  failed {check}: {count}" if check != RAN_ON else f"  {check}: {count}", markup=False)
    for count, what in ((report.unscored, "an evaluator could not score"), (report.empty, "empty")):
        if count:
            console.print(f"  left out, {what}: {count}", markup=False)
    console.print(f"{report.all_passed} question(s) answered well every time, {report.no_passing} with no good "
                  "answer to prefer (no pair from either)")
    console.print(f"wrote {len(report.pairs)} pair(s) to {escape(str(output))}")
    if len(report.pairs) >= MIN_TRAINING_EXAMPLES:
        console.print(f"next: [bold]tunery finetune {escape(str(output))} --method dpo -m {escape(model)}[/]")
    elif report.pairs:
        console.print(f"[yellow]{len(report.pairs)} pair(s)[/]: a DPO job needs at least {MIN_TRAINING_EXAMPLES}; "
                      "ask more questions or sample more answers (--samples, --per-question)")
    else:
        console.print("[yellow]no pairs[/]: sample more answers (--samples), or the checks found nothing to fix")


@click.command()
@click.argument("base")
@click.argument("fine_tuned")
@click.option("--questions", "questions_file", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSONL file with a question per line ({\"question\": ...}).")
@_common_options
def compare(base: str, fine_tuned: str, questions_file: Path, system: str | None, system_from: Path | None,
            evaluators: tuple[str, ...], question_key: str, max_tokens: int, temperature: float,
            limit: int | None, out: Path | None, as_json: bool) -> None:
    """Compare a base and a fine-tuned model side by side.

    Both models answer the same questions with the same system message; the terminal shows the
    answers side by side with a mark per check, and the metric deltas (fine-tuned minus base).
    The same report is written as HTML. Without -e, the checks are: recommends (no specific
    hotel/flight/rental car/restaurant) and ends_with_question; any -e replaces them (repeat -e
    for each check wanted, the defaults included).

    \b
    Example:
      tunery compare smollm2-135m-instruct my-tuned --questions questions.jsonl \\
        --system-from train.jsonl -e recommends -e ends_with_question \\
        -e style_similarity:file=train.jsonl
    """
    from tunery.chat import GenerationParams
    from tunery.evals import compare_models, load_questions, parse_evaluators, render_terminal_table

    questions = load_questions(questions_file, question_key, limit=limit)
    evals = parse_evaluators(evaluators or DEFAULT_COMPARE_EVALUATORS)
    sys_msg = system_message(system, system_from)
    chat_models = _load_models((base, fine_tuned))
    params = GenerationParams(temperature=temperature, max_tokens=max_tokens)
    report = _run(lambda progress: compare_models(chat_models[base], chat_models[fine_tuned], questions, sys_msg,
                                                  evals, question_key=question_key, params=params, out_dir=out,
                                                  progress=progress),
                  2 * len(questions))
    if as_json:
        print_json(report.summary_json() | {"report_dir": str(report.paths["html"].parent)})
    else:
        render_terminal_table(report, console)
