"""The command-line edge: thin click commands over the library (see ``main.COMMANDS``)."""

from tunery.cli.main import cli, main

__all__ = ["cli", "main"]
