import json
import re

from promptflow.core import tool

CATEGORIES = ("Movie", "App", "Academic", "Channel", "Profile", "PDF", "None")
EVIDENCE = ("Url", "Text content", "Both")


@tool
def convert_to_dict(input_str: str) -> dict:
    """The model's answer as {"category", "evidence"}: JSON when it wrote JSON, else the first
    category word it mentioned (small models are not always tidy)."""
    match = re.search(r"\{.*?\}", input_str, re.DOTALL)
    if match:
        try:
            data = json.loads(match.group(0))
            category = _pick(str(data.get("category", "")), CATEGORIES)
            evidence = _pick(str(data.get("evidence", "")), EVIDENCE)
            return {"category": category or "None", "evidence": evidence or "None"}
        except (ValueError, AttributeError):
            print(f"not valid JSON: {match.group(0)!r}")
    return {"category": _pick(input_str, CATEGORIES) or "None", "evidence": _pick(input_str, EVIDENCE) or "None"}


def _pick(text: str, options: tuple[str, ...]) -> str | None:
    found = [(m.start(), o) for o in options for m in [re.search(rf"\b{re.escape(o)}\b", text, re.IGNORECASE)] if m]
    return min(found)[1] if found else None
