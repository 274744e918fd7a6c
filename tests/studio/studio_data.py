"""Chat JSONL lines for the studio tests: short valid examples and a file with known errors."""

from __future__ import annotations

import json
from pathlib import Path

CITIES = ["Rome", "Paris", "Oslo", "Lima", "Cairo", "Kyoto", "Lisbon", "Quito", "Hanoi", "Dakar", "Perth",
          "Cusco", "Riga", "Porto", "Seville", "Bergen"]
SYSTEM = "You are a concise travel helper."


def valid_lines(n: int = 12, start: int = 0) -> list[str]:
    out = []
    for i in range(start, start + n):
        city = CITIES[i % len(CITIES)] + ("" if i < len(CITIES) else f" {i}")
        out.append(json.dumps({"messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"What should I see in {city}?"},
            {"role": "assistant", "content": f"Walk the old town of {city}. When do you go?"}]}))
    return out


def pair_lines(n: int = 12) -> list[str]:
    """Preference pairs for DPO: a prompt, the preferred answer and the other one."""
    return [json.dumps({"input": {"messages": [{"role": "user", "content": f"What should I see in {CITIES[i % len(CITIES)]}?"}]},
                        "preferred_output": [{"role": "assistant", "content": "The old town, on foot."}],
                        "non_preferred_output": [{"role": "assistant", "content": "Nothing."}]}) for i in range(n)]


BAD_JSON = '{"messages": [{"role": "user", "content": "hi"}'
BAD_ROLE = json.dumps({"messages": [{"role": "robot", "content": "beep"}, {"role": "assistant", "content": "x"}]})


def invalid_lines() -> list[str]:
    """12 lines: line 3 is not JSON, line 5 has an unknown role."""
    lines = valid_lines(12)
    lines[2], lines[4] = BAD_JSON, BAD_ROLE
    return lines


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def set_number(page, selector: str, value: str) -> None:
    """Type a number into a field and leave it, as a user does (the page reads it on change)."""
    page.fill(selector, value)
    page.press(selector, "Tab")
