"""Progress callbacks: how long library work (pulling a model, exporting one) tells its caller,
e.g. the CLI's status line, what it is doing now, without knowing who listens."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str], None]
"""Called with one short line, in the present tense, each time the work moves to a new step."""


def say(progress: Progress | None, msg: str) -> None:
    """Tell ``progress`` (when there is one) what the work is doing now."""
    if progress is not None:
        progress(msg)
