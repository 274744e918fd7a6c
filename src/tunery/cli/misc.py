"""`tunery version`."""

from __future__ import annotations

import importlib.metadata
import platform

import click

from tunery.cli._common import console


@click.command()
def version() -> None:
    """Print tunery's version and the versions of the libraries it runs on."""
    from tunery import __version__
    from tunery.home import Home

    console.print(f"tunery {__version__}")
    for dist in ("torch", "transformers", "peft", "tokenizers", "safetensors", "gguf", "fastapi"):
        try:
            v = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            v = "not installed"
        console.print(f"  {dist:<13} {v}")
    console.print(f"  python        {platform.python_version()}")
    console.print(f"  home          {Home.from_env().root}")
