"""Small, valid chat examples and checks of chat models and engines shared by tests (importable
as ``support_chat``: tests/ is on sys.path through its conftest)."""

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


def assert_close_answers_every_request(engine, prompt_ids: list[int], *, timeout: float = 60.0) -> None:
    """Close ``engine`` while requests race with it and arrive after it, and check that every one
    gets a final ``Delta`` within ``timeout`` (a regression fails here instead of hanging).

    One request is running when ``close`` starts; one is mid-``submit`` (held inside the inbox's
    ``put``, where an unguarded engine has already decided it is open) as ``close`` runs; three
    more come from threads during ``close``; one comes after it."""
    import queue
    import threading
    import time

    import pytest

    from tunery.serving.engine import CLOSE, EngineRequest

    finals: queue.Queue = queue.Queue()
    running = threading.Event()

    def emit(d) -> None:
        if d.index == 0:
            running.set()
        if d.final:
            finals.put(d)

    def request(index: int, **kw) -> EngineRequest:
        return EngineRequest(prompt_ids=list(prompt_ids), max_tokens=kw.pop("max_tokens", 8), emit=emit,
                             temperature=0.0, index=index, **kw)

    engine.submit(request(0, max_tokens=64, ignore_eos=True))
    assert running.wait(timeout), "the engine never started the first request"

    inbox = engine._inbox
    put, in_put = inbox.put, threading.Event()

    def slow_put(item, *args, **kwargs):
        if item is not CLOSE:
            in_put.set()
            time.sleep(0.3)  # widen the window between "is the engine open?" and the put
        put(item, *args, **kwargs)

    inbox.put = slow_put
    racer = threading.Thread(target=engine.submit, args=(request(1),))
    racer.start()
    assert in_put.wait(timeout)
    closer = threading.Thread(target=engine.close)
    closer.start()
    during = [threading.Thread(target=engine.submit, args=(request(i),)) for i in (2, 3, 4)]
    for t in during:
        t.start()
    for t in (racer, closer, *during):
        t.join(timeout)
    engine.submit(request(5))

    answered = set()
    deadline = time.monotonic() + timeout
    while len(answered) < 6:
        try:
            answered.add(finals.get(timeout=max(0.0, deadline - time.monotonic())).index)
        except queue.Empty:
            pytest.fail(f"requests {sorted(set(range(6)) - answered)} got no final Delta within {timeout}s of close")
