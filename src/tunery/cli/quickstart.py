"""`tunery quickstart`: the whole exercise in one command (see ``tunery.quickstart``)."""

from __future__ import annotations

import time

import click
from rich.panel import Panel

from tunery.cli._common import console, err_console, precision_option, status


def _step(n: int, text: str) -> None:
    console.rule(f"[bold]{n}. {text}")


def _job(earlier: dict | None, create) -> str:
    """The fine-tuned model of an earlier identical job, else of a new one (``create()``), followed
    to its end here; a job that fails, is cancelled or is paused ends the quickstart with exit status 1."""
    from tunery.cli.jobs import _follow
    from tunery.jobs import get_job

    if earlier:
        console.print(f"reusing {earlier['fine_tuned_model']} from job {earlier['id']} (same data and settings; "
                      "--retrain to train again)")
        return earlier["fine_tuned_model"]
    job = create()
    console.print(f"job {job['id']}")
    try:
        _follow(job["id"], run_worker=True)
    except SystemExit as e:
        if e.code:
            raise
    return get_job(job["id"])["fine_tuned_model"]


@click.command()
@click.option("--model", "-m", default="smollm2-135m-instruct", show_default=True, help="Base model.")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=42, show_default=True, help="Fine-tuning seed.")
@click.option("--retrain", is_flag=True, help="Fine-tune again even if an identical fine-tune exists.")
@click.option("--questions", type=click.IntRange(1), default=None, metavar="N", help="Ask only the first N held-out questions.")
@click.option("--preference/--no-preference", default=True, show_default=True,
              help="After the supervised fine-tune, preference-tune it (DPO, one epoch) on the bundled pairs of its "
                   "own answers; --no-preference compares the supervised fine-tune alone (minutes sooner).")
@click.option("--serve/--no-serve", default=True, show_default=True,
              help="Start the studio with both models deployed (--no-serve ends after the report).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True,
              help="Port for the studio and API.")
@precision_option("the base and fine-tuned models", process_default=True)
def quickstart(model: str, seed: int, retrain: bool, questions: int | None, preference: bool, serve: bool,
               port: int) -> None:
    """Pull, validate, fine-tune, preference-tune, compare with the base model, and serve the studio.

    Uses the bundled travel-assistant dataset: a system message that forbids hotel, flight,
    rental-car and restaurant recommendations, and answers that end with a question. The
    supervised fine-tune learns from its 229 conversations; the preference stage (DPO) then
    trains that fine-tune on pairs of its own sampled answers (one that declines a forbidden
    recommendation in words, or answers an allowed question, preferred over one that does not;
    sampled once from SmolLM2's fine-tune at seed 42 and bundled) and on 64 hand-written pairs.
    The comparison asks base and fine-tuned the held-out questions with that system message: some
    ask for a forbidden recommendation (to decline), the others for help it should give. The
    summary shows, on the first, whether the answer names no specific business and says no in
    words; on the second, over-refusal and whether the answer is about the question; ending with
    a question on both; and style similarity to the training answers.
    """
    from tunery import quickstart as qs
    from tunery.data.stats import token_stats
    from tunery.data.validate import validate_file
    from tunery.models import ensure
    from tunery.models.loading import load_tokenizer

    if serve:  # a port in use is named now, not after the minutes of work that end in serving
        from tunery.server.run import check_can_listen

        check_can_listen("127.0.0.1", port)
    started = time.perf_counter()
    plan = qs.Plan(model=model, seed=seed, questions=questions, preference=preference)

    _step(1, f"Base model: {model}")
    with status(f"pulling {model}") as update:
        base = ensure(model, progress=update)
    console.print(f"ready at {base.path}")

    _step(2, "Data: the bundled travel dataset")
    tok = load_tokenizer(base)
    def checked(path, purpose):
        """The file's report; a bundled file that does not validate (an edited install) stops here."""
        report = validate_file(path, purpose=purpose)
        if not report.ok:
            console.print(f"{path.name}: [red]invalid[/]")
            console.print(report.format(limit=20))
            raise SystemExit(1)
        return report

    for path, purpose in ((qs.TRAIN, "training"), (qs.VALID, "validation")):
        report = checked(path, purpose)
        stats = token_stats(report.conversations, tok, context_length=base.context_length)
        console.print(f"{path.name}: [green]valid[/], {len(report.examples)} examples, {len(report.warnings)} warning(s), "
                      f"{stats.total_tokens} tokens ({stats.trained_tokens} trained), "
                      f"median {stats.tokens.median:.0f} tokens per example")
    for path in (qs.ONPOLICY, qs.PREFERENCES, qs.PREFERENCES_VALID) if preference else ():
        report = checked(path, "validation" if path == qs.PREFERENCES_VALID else "training")
        console.print(f"{path.name}: [green]valid[/], {len(report.examples)} preference pairs, "
                      f"{len(report.warnings)} warning(s)")

    _step(3, "Fine-tune (LoRA, default settings)")
    supervised = tuned = _job(None if retrain else qs.previous_job(plan), lambda: qs.create_job(plan))
    if plan.preference:
        _step(4, f"Preference-tune (DPO, {qs.DPO_EPOCHS} epoch) on pairs of the fine-tune's own answers")
        if (plan.model, plan.seed) != qs.ONPOLICY_FROM:
            err_console.print(f"[yellow]note:[/] the bundled pairs are the answers of {qs.ONPOLICY_FROM[0]}'s fine-tune "
                              f"at seed {qs.ONPOLICY_FROM[1]}, not this one's: here they teach another model's answers "
                              "(off-policy). Make this fine-tune's own with `tunery eval pairs` (see "
                              "src/tunery/examples/travel/README.md), or skip the stage with --no-preference.",
                              soft_wrap=True)
        key = plan.preference_fingerprint(supervised)
        tuned = _job(None if retrain else qs.previous_job(plan, key),
                     lambda: qs.create_preference_job(plan, supervised))

    step = 4 + plan.preference
    _step(step, "Compare base and fine-tuned on held-out questions")
    from tunery.cli.evals import _run
    from tunery.evals import load_questions, render_terminal_table

    with status("preparing the fast serving path") as update:
        for line in qs.prepare_serving(plan, tuned, progress=update):
            console.print(line)
    n_q = len(load_questions(qs.QUESTIONS, limit=questions))
    report = _run(lambda progress: qs.compare(plan, tuned, progress=progress), 2 * n_q)  # bar on stderr, as eval's
    render_terminal_table(report, console)

    _step(step + 1, "Deploy")
    names = qs.deploy_both(plan, tuned)
    console.print(f"deployed {names[0]} -> {model} and {names[1]} -> {tuned}")
    console.print(f"quickstart took {time.perf_counter() - started:.0f} s")
    if not serve:
        return
    url = f"http://127.0.0.1:{port}"
    console.print(Panel(f"Studio: {url}/  (Compare: pick {names[0]} and {names[1]})\n"
                        f"API:    {url}/v1  (openai.OpenAI(base_url=\"{url}/v1\", api_key=\"unused\"))\n"
                        "Ctrl-C stops the server.", title="serving"))
    from tunery.server.run import serve as run_server

    run_server("127.0.0.1", port, api_keys=(), worker=True, log_level="warning")
