"""References in flow files: ``${inputs.x}``, ``${node.output}``, ``${node.output.key}`` inside a
flow, and ``${data.col}``, ``${run.outputs.x}``, ``${run.inputs.x}`` in a batch run's column
mapping; plus variant selectors such as ``${node.variant_1}``.

A value is a reference only when the whole string is one ``${...}``; anything else is a literal,
as in Prompt flow."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tunery.errors import InvalidInput

_WHOLE = re.compile(r"^\s*\$\{(?P<body>[^{}]*)\}\s*$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")

MISSING = object()  # a path step that found nothing (distinct from a None value)


@dataclass(frozen=True)
class Reference:
    """``source`` is ``inputs``, a node name, ``data`` or ``run``; ``section`` is ``output`` for a
    node, ``outputs``/``inputs`` for a parent run, and empty for ``inputs``/``data``."""

    source: str
    section: str
    path: tuple[str, ...]
    text: str

    @property
    def is_flow_input(self) -> bool:
        return self.source == "inputs" and not self.section

    @property
    def node(self) -> str | None:
        return self.source if self.section == "output" else None

    def __str__(self) -> str:
        return self.text


def is_reference(value: Any) -> bool:
    return isinstance(value, str) and _WHOLE.match(value) is not None


def _looks_like_reference(value: str) -> bool:
    """``${...}`` written around the whole value, but not parseable (e.g. ``${{x}}``): a typo to
    report rather than a literal to pass on silently."""
    text = value.strip()
    return text.startswith("${") and text.endswith("}")


def _split(value: Any) -> tuple[str, list[str]] | None:
    """``(text, dotted parts)`` of a whole ``${...}`` value; None for a literal. Something that
    looks like a reference but does not parse raises ``ValueError``."""
    if not isinstance(value, str):
        return None
    m = _WHOLE.match(value)
    if m is None:
        if _looks_like_reference(value):
            raise ValueError(f"malformed reference {value.strip()}")
        return None
    return value.strip(), [p.strip() for p in m.group("body").split(".")]


def parse_flow_reference(value: Any) -> Reference | None:
    """Parse a reference inside a flow (None for a literal). Raises ``ValueError`` with a
    one-line reason for a malformed one; callers attach the node and field."""
    split = _split(value)
    if split is None:
        return None
    text, parts = split
    if not parts or any(not p for p in parts):
        raise ValueError(f"malformed reference {text}")
    head = parts[0]
    if head == "inputs":
        if len(parts) != 2:
            raise ValueError(f"{text} must name one flow input, as ${{inputs.NAME}}")
        return Reference("inputs", "", (parts[1],), text)
    if len(parts) < 2 or parts[1] != "output":
        hint = " (did you mean .output?)" if len(parts) >= 2 and parts[1] == "outputs" else ""
        raise ValueError(f"{text} must be ${{inputs.NAME}}, ${{NODE.output}} or ${{NODE.output.KEY}}{hint}")
    if not _NAME.match(head):
        raise ValueError(f"{text} names an invalid node {head!r}")
    return Reference(head, "output", tuple(parts[2:]), text)


def parse_mapping_reference(value: Any) -> Reference | None:
    """Parse a column-mapping value: ``${data.col}``, ``${run.outputs.x}``, ``${run.inputs.x}``
    (None for a literal constant)."""
    split = _split(value)
    if split is None:
        return None
    text, parts = split
    if len(parts) >= 2 and parts[0] == "data" and all(parts[1:]):
        return Reference("data", "", tuple(parts[1:]), text)
    if len(parts) >= 3 and parts[0] == "run" and parts[1] in ("outputs", "inputs") and all(parts[2:]):
        return Reference("run", parts[1], tuple(parts[2:]), text)
    raise ValueError(f"{text} must be ${{data.COLUMN}}, ${{run.outputs.NAME}} or ${{run.inputs.NAME}}")


def lookup(value: Any, path: tuple[str, ...]) -> Any:
    """Follow ``path`` into dicts (keys), lists (indices) and objects (attributes); MISSING when
    a step finds nothing."""
    for step in path:
        if isinstance(value, dict):
            if step not in value:
                return MISSING
            value = value[step]
        elif isinstance(value, (list, tuple)) and step.lstrip("-").isdigit():
            i = int(step)
            if not -len(value) <= i < len(value):
                return MISSING
            value = value[i]
        elif not isinstance(value, (str, int, float, bool, type(None))) and hasattr(value, step):
            value = getattr(value, step)
        else:
            return MISSING
    return value


def parse_variant(selector: str) -> tuple[str, str]:
    """``${node.variant_1}`` (or ``node.variant_1``) -> ``("node", "variant_1")``."""
    text = selector.strip()
    m = _WHOLE.match(text)
    body = m.group("body") if m else text
    parts = [p.strip() for p in body.split(".")]
    if len(parts) != 2 or not all(parts):
        raise InvalidInput(f"invalid variant {selector!r}", param="variant",
                           hint="write it as '${NODE.VARIANT_ID}', e.g. '${summarize.variant_1}'")
    return parts[0], parts[1]
