"""`tunery chat` (interactive, streaming) and `tunery ask` (one answer, scriptable).

MODEL is a registered model, fine-tune, checkpoint or deployment, or ``NAME@http://host:port/v1``
for any OpenAI-compatible server."""

from __future__ import annotations

import contextlib
import re
import sys

import click

from tunery.cli._common import console, err_console, precision_option, print_json, status, utf8_text

_sampling = [
    click.option("--system", default=None, help="System message."),
    click.option("--temperature", type=click.FloatRange(0, 2), default=0.7, show_default=True,
                 help="Sampling temperature (0 = greedy)."),
    click.option("--top-p", type=click.FloatRange(0, 1), default=1.0, show_default=True, help="Nucleus sampling."),
    click.option("--max-tokens", type=click.IntRange(min=1), default=512, show_default=True,
                 help="Most tokens per answer."),
    click.option("--seed", type=int, default=None, help="Seed: the same seed gives the same answer."),
]


def sampling(f):
    for opt in reversed(_sampling):
        f = opt(f)
    return precision_option("local models")(f)


def _model(ref: str):
    from tunery.cli import _common
    from tunery.serving.local import LocalChatModel
    from tunery.serving.resolve import get_chat_model

    model = get_chat_model(ref, precision=_common.chosen_precision)
    if isinstance(model, LocalChatModel):
        with status(f"loading {ref}") as update:
            target = model.load(update)  # now, not during the first answer
        if target.notice:
            err_console.print(f"[dim]note: {target.notice}[/]")
    return model


def _params(temperature: float, top_p: float, max_tokens: int, seed: int | None):
    from tunery.chat import GenerationParams

    return GenerationParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed)


@click.command()
@click.argument("model")
@sampling
def chat(model: str, system: str | None, temperature: float, top_p: float, max_tokens: int,
         seed: int | None) -> None:
    """Chat with MODEL in the terminal; answers stream as they are generated.

    Type /reset to start over, /exit (or Ctrl-D) to leave.
    """
    from rich.markup import escape

    from tunery.chat import ChatMessage, Role
    from tunery.errors import InvalidInput

    system = utf8_text(system, "--system", param="system")
    llm = _model(model)
    params = _params(temperature, top_p, max_tokens, seed)
    history: list[ChatMessage] = [ChatMessage(Role.SYSTEM, system)] if system else []
    console.print(f"[dim]chatting with {model} - /reset to start over, /exit to leave[/]")
    with contextlib.suppress(AttributeError, ValueError):  # a line that is not UTF-8 is named below, not fatal
        sys.stdin.reconfigure(errors="surrogateescape")
    while True:
        try:
            text = console.input("[bold cyan]you>[/] ")
        except EOFError:
            console.print()
            return
        if text.strip() in ("/exit", "/quit"):
            return
        if text.strip() == "/reset":
            history = history[:1] if system else []
            console.print("[dim](conversation cleared)[/]")
            continue
        if not text.strip():
            continue
        if re.fullmatch(r"/[a-z]+", text.strip()):  # a mistyped command is not a message to the model
            console.print(f"[dim](unknown command {text.strip()}: /reset starts over, /exit leaves)[/]")
            continue
        try:
            utf8_text(text, "that line")
        except InvalidInput as e:  # said, and the chat goes on
            err_console.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
            continue
        history.append(ChatMessage(Role.USER, text))
        console.print("[bold green]bot>[/] ", end="")
        answer, finish = "", None
        try:
            for chunk in llm.stream(history, params):
                if chunk.text:
                    answer += chunk.text
                    sys.stdout.write(chunk.text)
                    sys.stdout.flush()
                finish = chunk.finish_reason or finish
        except KeyboardInterrupt:
            finish = "interrupted"
        sys.stdout.write("\n")
        if finish not in (None, "stop"):
            console.print(f"[dim]({finish})[/]")
        history.append(ChatMessage(Role.ASSISTANT, answer))


@click.command()
@click.argument("model")
@click.argument("question")
@sampling
@click.option("--json", "as_json", is_flag=True, help="Print the answer, finish reason and usage as JSON.")
def ask(model: str, question: str, system: str | None, temperature: float, top_p: float, max_tokens: int,
        seed: int | None, as_json: bool) -> None:
    """Ask MODEL one QUESTION and print the answer ('-' reads the question from stdin)."""
    from tunery.chat import ChatMessage, Role
    from tunery.errors import InvalidInput

    if question == "-":
        stdin = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
        question = utf8_text(stdin.decode("utf-8", "surrogateescape"), "the question read from stdin",
                             param="question")
    utf8_text(question, "the question", param="question")
    system = utf8_text(system, "--system", param="system")
    if not question.strip():
        raise InvalidInput("the question is empty", param="question", hint="ask something, e.g. "
                           "tunery ask MODEL \"Where should I go in spring?\"")
    messages = ([ChatMessage(Role.SYSTEM, system)] if system else []) + [ChatMessage(Role.USER, question)]
    llm = _model(model)
    params = _params(temperature, top_p, max_tokens, seed)
    if as_json:
        done = llm.generate(messages, params)
        print_json({"model": model, "answer": done.text, "finish_reason": done.finish_reason,
                    "usage": done.usage.to_openai()})
        return
    finish = None
    for chunk in llm.stream(messages, params):
        if chunk.text:
            sys.stdout.write(chunk.text)
            sys.stdout.flush()
        finish = chunk.finish_reason or finish
    sys.stdout.write("\n")
    if finish not in (None, "stop"):
        err_console.print(f"[dim](finish reason: {finish})[/]")
