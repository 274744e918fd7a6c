"""Small, valid chat examples shared by tests (importable as ``support_chat``: tests/ is on
sys.path through its conftest)."""

from __future__ import annotations


def chat_lines(n: int = 12, *, system: str = "You are a concise travel helper.") -> list[dict]:
    """``n`` short, distinct, valid chat examples."""
    cities = ["Rome", "Paris", "Oslo", "Lima", "Cairo", "Kyoto", "Lisbon", "Quito", "Hanoi", "Dakar", "Perth",
              "Cusco", "Riga", "Porto", "Seville", "Bergen"]
    out = []
    for i in range(n):
        c = cities[i % len(cities)] + ("" if i < len(cities) else f" {i}")
        out.append({"messages": [{"role": "system", "content": system},
                                 {"role": "user", "content": f"What should I see in {c}?"},
                                 {"role": "assistant", "content": f"Walk the old town of {c}. When do you go?"}]})
    return out


def assert_stream_matches(model, messages, params):
    """Streaming ``messages`` through ``model`` gives the same text, finish reason and usage as one
    ``generate`` call; returns that completion for further checks."""
    whole = model.generate(messages, params)
    chunks = list(model.stream(messages, params))
    assert "".join(c.text for c in chunks) == whole.text
    assert [c.finish_reason for c in chunks if c.finish_reason] == [whole.finish_reason]
    assert chunks[-1].usage == whole.usage
    return whole
