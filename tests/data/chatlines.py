"""Builders of chat JSONL lines for the data tests."""

from __future__ import annotations

import json
from typing import Any

SYSTEM = {"role": "system", "content": "You are a travel assistant."}


def example(i: int = 0, *, system: bool = True, **extra: Any) -> dict[str, Any]:
    msgs = [SYSTEM] if system else []
    msgs += [{"role": "user", "content": f"What should I see in Rome, day {i}?"},
             {"role": "assistant", "content": f"Visit the Forum on day {i}."}]
    return {"messages": msgs, **extra}


def line(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def jsonl(objs: list[Any]) -> bytes:
    return ("\n".join(o if isinstance(o, str) else line(o) for o in objs) + "\n").encode()


def good_lines(n: int = 10, start: int = 0) -> list[str]:
    return [line(example(i)) for i in range(start, start + n)]
