"""The ``tunery`` command: a root group whose subcommands load lazily, so ``tunery --help`` and
``tunery version`` answer without importing torch."""

from __future__ import annotations

import importlib
import importlib.util

import click

from tunery.cli._common import Group

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

HELP = {  # each command's own first sentence (tests/core/test_state.py keeps them equal)
    "version": "Print tunery's version and the versions of the libraries it runs on.",
    "models": "List, pull, add, inspect and calibrate base and fine-tuned models.",
    "data": "Validate, inspect, scrub, split and synthesize chat and preference JSONL training data.",
    "finetune": "Start a fine-tuning job on TRAINING_FILE (chat JSONL; preference pairs with --method dpo).",
    "jobs": "List, follow, inspect, pause, resume and cancel fine-tuning jobs.",
    "worker": "Run a job worker in the foreground: validates, trains, resumes interrupted jobs.",
    "serve": "Serve the OpenAI-compatible API, the job worker and the web studio.",
    "deploy": "Deploy MODEL (a base model, fine-tune, checkpoint, or an ONNX export folder) under a name.",
    "deployments": "List, show, update and delete deployments.",
    "chat": "Chat with MODEL in the terminal; answers stream as they are generated.",
    "ask": "Ask MODEL one QUESTION and print the answer ('-' reads the question from stdin).",
    "flow": "Test, validate and manage prompt flows (Prompt flow's flow.dag.yaml) and their connections.",
    "run": "Batch-run flows over JSONL data; inspect, compare and visualize runs.",
    "eval": "Evaluate models on a dataset and write a report; make DPO pairs from a model's own answers.",
    "compare": "Compare a base and a fine-tuned model side by side.",
    "export": "Export MODEL (a base model, fine-tuned model or checkpoint) to --format in -o DIR.",
    "quickstart": "Pull, validate, fine-tune, preference-tune, compare with the base model, and serve the studio.",
}


class LazyGroup(Group):
    """The root group: a command's module is imported only when that command runs, so its summary
    for ``tunery --help`` comes from HELP (a test keeps HELP equal to each command's own first
    sentence)."""

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

    def command_summaries(self, ctx: click.Context) -> list[tuple[str, str]]:
        return [(name, HELP.get(name, "")) for name in self.list_commands(ctx)]


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def cli() -> None:
    """tunery: fine-tune chat models on your own machine, then serve, evaluate and export them.

    \b
    State lives in TUNERY_HOME (default ~/.tunery). Start with:
      tunery quickstart                  (the whole story on the bundled travel data)
      tunery models pull smollm2-135m-instruct
      tunery data validate my-data.jsonl
      tunery finetune my-data.jsonl --wait
      tunery serve                       (API at /v1, studio at http://127.0.0.1:8000)
    """


def main() -> None:
    from tunery.cli._common import run_cli

    run_cli(cli)


if __name__ == "__main__":
    main()
