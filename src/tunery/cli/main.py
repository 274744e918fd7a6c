"""The ``tunery`` command: a root group whose subcommands load lazily, so ``tunery --help`` and
``tunery version`` answer without importing torch."""

from __future__ import annotations

import importlib
import importlib.util

import click

# command name -> "module:attribute"; each module is a thin map onto one library area
COMMANDS: dict[str, str] = {
    "version": "tunery.cli.misc:version",
    "models": "tunery.cli.models:models",
    "data": "tunery.cli.data:data",
    "finetune": "tunery.cli.jobs:finetune",
    "jobs": "tunery.cli.jobs:jobs",
    "worker": "tunery.cli.jobs:worker",
    "serve": "tunery.cli.serve:serve",
    "deploy": "tunery.cli.serve:deploy",
    "deployments": "tunery.cli.serve:deployments",
    "chat": "tunery.cli.chat:chat",
    "ask": "tunery.cli.chat:ask",
    "flow": "tunery.cli.flows:flow",
    "run": "tunery.cli.flows:run",
    "eval": "tunery.cli.evals:eval_group",
    "compare": "tunery.cli.evals:compare",
    "export": "tunery.cli.export:export",
    "quickstart": "tunery.cli.quickstart:quickstart",
}

HELP = {
    "version": "Print tunery's version and its main libraries'.",
    "models": "List, pull, add and inspect base and fine-tuned models.",
    "data": "Validate, inspect, scrub and split chat JSONL training data.",
    "finetune": "Start a fine-tuning job on a chat JSONL file.",
    "jobs": "List, follow, inspect and cancel fine-tuning jobs.",
    "worker": "Run a standalone job worker.",
    "serve": "Serve the OpenAI-compatible API and the web studio.",
    "deploy": "Deploy a model under a name, with an optional tokens-per-minute limit.",
    "deployments": "List and delete deployments.",
    "chat": "Chat with a model in the terminal (streaming).",
    "ask": "Ask a model one question and print the answer.",
    "flow": "Test and validate prompt flows (flow.dag.yaml).",
    "run": "Batch-run flows over JSONL data; inspect, compare and visualize runs.",
    "eval": "Evaluate models on a dataset and write a report.",
    "compare": "Compare a base and a fine-tuned model side by side.",
    "export": "Export a model to Hugging Face, ONNX or GGUF format.",
    "quickstart": "Run the whole story: pull, validate, fine-tune, compare, serve.",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if self._available(name)]

    @staticmethod
    def _available(name: str) -> bool:
        module = COMMANDS[name].split(":")[0]
        return importlib.util.find_spec(module) is not None

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None or not self._available(name):
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, HELP.get(name, "")) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def cli() -> None:
    """tunery: fine-tune chat models on your own machine, then serve, evaluate and export them.

    \b
    State lives in TUNERY_HOME (default ~/.tunery). Start with:
      tunery models pull smollm2-135m-instruct
      tunery data validate my-data.jsonl
      tunery finetune my-data.jsonl --wait
      tunery serve
    """


def main() -> None:
    from tunery.cli._common import run_cli

    run_cli(cli)


if __name__ == "__main__":
    main()
