"""The engine manager: one engine per set of weights, LRU unloading, and engines plugged in by
name behind the same contract."""

from __future__ import annotations

import shutil
import threading

from tunery.chat import ChatMessage, Role
from tunery.serving import GenerationParams
from tunery.serving.engine import Delta, EngineRequest
from tunery.serving.manager import EngineManager, register_engine

HI = [ChatMessage(Role.USER, "Hello!")]


def test_least_recently_used_idle_engine_is_unloaded(tiny_model, tmp_path):
    from tunery.models import ModelRecord, register

    copy = shutil.copytree(tiny_model.path, tmp_path / "copy")
    register(ModelRecord(id="tiny-copy", kind="base", path=copy, source="test", meta={"catalog": "tiny-random"}))
    mgr = EngineManager(max_engines=1)
    mgr.spare_s = 0
    try:
        first = mgr.target("tiny-random").engine
        assert mgr.target("tiny-random").engine is first  # reused, not reloaded
        second = mgr.target("tiny-copy").engine
        assert second is not first and mgr.loaded() == [f"compiled-int8:{copy}"]
        assert first._closed
    finally:
        mgr.close()


class EchoEngine:
    """A stand-in for another engine (ONNX Runtime, vLLM): answers with the prompt's length."""

    context_length = 4096

    def __init__(self) -> None:
        self.requests: list[EngineRequest] = []

    def submit(self, request: EngineRequest) -> None:
        self.requests.append(request)
        request.emit(Delta(request.index, f"{len(request.prompt_ids)} tokens", 2, "stop"))

    def busy(self) -> bool:
        return False

    def close(self) -> None:
        pass


def test_a_model_can_name_another_engine(tiny_model):
    from tunery.models import ModelRecord, register
    from tunery.serving.local import LocalChatModel
    from tunery.serving.manager import manager

    echo = EchoEngine()
    register_engine("echo", lambda rec: echo)
    register(ModelRecord(id="tiny-echo", kind="base", path=tiny_model.path, source="test",
                         meta={"catalog": "tiny-random", "engine": "echo"}))
    done = LocalChatModel("tiny-echo").generate(HI, GenerationParams(max_tokens=5, seed=1, n=2))
    assert done.choices == (f"{done.usage.prompt_tokens} tokens",) * 2 and done.usage.completion_tokens == 4
    assert [r.seed for r in echo.requests] == [1, 2] and all(r.max_tokens == 5 for r in echo.requests)
    assert manager().target("tiny-echo").engine is echo


def test_missing_engine_kind_is_a_clear_error(tiny_model):
    import pytest

    from tunery.errors import InvalidInput
    from tunery.models import ModelRecord, register

    register(ModelRecord(id="tiny-vllm", kind="base", path=tiny_model.path, source="test",
                         meta={"engine": "vllm-not-installed"}))
    with pytest.raises(InvalidInput) as e:
        EngineManager().target("tiny-vllm")
    assert "vllm-not-installed" in e.value.message and e.value.param == "model"


def test_engine_modules_are_found_by_name(monkeypatch):
    """``meta["engine"] == "onnx"`` loads ``tunery.serving.onnx_engine`` and calls its install()."""
    import importlib.util
    import sys
    import types

    from tunery.serving import manager as mgr_module

    fake = types.ModuleType("tunery.serving.fake_engine")
    fake.install = lambda: register_engine("fake", lambda rec: EchoEngine())
    monkeypatch.setitem(sys.modules, "tunery.serving.fake_engine", fake)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "tunery.serving.fake_engine" else real_find_spec(name, *a))
    monkeypatch.delitem(mgr_module._FACTORIES, "fake", raising=False)
    factory = mgr_module._discover("fake")
    assert factory is not None and isinstance(factory(None), EchoEngine)
    assert mgr_module._discover("no_such") is None and mgr_module._discover("../evil") is None
    mgr_module._FACTORIES.pop("fake", None)


# --- loads and unloads do not hold up other models ----------------------------------------------

class Gate:
    """An engine factory (or close) that waits until the test opens it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.open = threading.Event()
        self.calls = 0

    def wait(self) -> None:
        self.calls += 1
        self.entered.set()
        assert self.open.wait(30), "the test never opened the gate"


def _register_engine_model(tiny_model, name: str, kind: str) -> None:
    from tunery.models import ModelRecord, register

    register(ModelRecord(id=name, kind="base", path=tiny_model.path, source="test",
                         meta={"catalog": "tiny-random", "engine": kind}))


def _answers_within(fn, seconds: float) -> bool:
    done = threading.Event()
    threading.Thread(target=lambda: (fn(), done.set()), daemon=True).start()
    return done.wait(seconds)


def test_a_loaded_model_answers_while_another_one_loads(tiny_model):
    gate = Gate()
    register_engine("echo-warm", lambda rec: EchoEngine())
    register_engine("echo-cold", lambda rec: (gate.wait(), EchoEngine())[1])
    _register_engine_model(tiny_model, "warm", "echo-warm")
    _register_engine_model(tiny_model, "cold", "echo-cold")
    mgr = EngineManager(max_engines=4)
    try:
        warm = mgr.target("warm").engine
        got = []
        loads = [threading.Thread(target=lambda: got.append(mgr.target("cold").engine)) for _ in range(2)]
        loads[0].start()
        assert gate.entered.wait(10)
        loads[1].start()  # the same cold model, asked for while it loads
        assert _answers_within(lambda: mgr.target("warm"), 5), "a loaded model waited behind a cold load"
        gate.open.set()
        for t in loads:
            t.join(10)
        assert gate.calls == 1 and len(got) == 2 and got[0] is got[1]  # loaded once, for both
        assert mgr.target("warm").engine is warm and len(mgr.loaded()) == 2
    finally:
        gate.open.set()
        mgr.close()


def test_a_failed_load_fails_its_waiters_and_is_retried(tiny_model, monkeypatch):
    from tunery.errors import InvalidInput
    from tunery.serving import manager as manager_module

    gate, attempts, waiting = Gate(), [], threading.Event()
    real_wait = manager_module._Loading.wait

    def wait(self):
        waiting.set()
        return real_wait(self)

    monkeypatch.setattr(manager_module._Loading, "wait", wait)

    def flaky(rec):
        attempts.append(1)
        if len(attempts) == 1:
            gate.wait()
            raise InvalidInput("weights unreadable", param="model")
        return EchoEngine()

    register_engine("echo-flaky", flaky)
    _register_engine_model(tiny_model, "flaky", "echo-flaky")
    mgr = EngineManager()
    errors = []

    def ask():
        try:
            mgr.target("flaky")
        except InvalidInput as e:
            errors.append(e.message)

    first, second = threading.Thread(target=ask), threading.Thread(target=ask)
    first.start()
    assert gate.entered.wait(10)
    second.start()
    assert waiting.wait(10)  # the second request waits for the first one's load
    gate.open.set()
    first.join(10)
    second.join(10)
    assert errors == ["weights unreadable"] * 2 and len(attempts) == 1
    assert isinstance(mgr.target("flaky").engine, EchoEngine) and len(attempts) == 2
    mgr.close()


def test_an_engine_is_closed_outside_the_lock(tiny_model):
    gate = Gate()

    class SlowToClose(EchoEngine):
        def close(self) -> None:
            gate.wait()  # a torch engine waits for its thread to stop, up to 30 s

    register_engine("echo-slow-close", lambda rec: SlowToClose())
    register_engine("echo-other", lambda rec: EchoEngine())
    register_engine("echo-new", lambda rec: EchoEngine())
    for name in ("slow-close", "other", "new"):
        _register_engine_model(tiny_model, name, f"echo-{name}")
    mgr = EngineManager(max_engines=2)
    mgr.spare_s = 0
    try:
        mgr.target("slow-close")
        mgr.target("other")
        loading = threading.Thread(target=lambda: mgr.target("new"))  # unloads slow-close, the least recent
        loading.start()
        assert gate.entered.wait(10)
        assert _answers_within(lambda: mgr.target("other"), 5), "a request waited for another engine's close"
        gate.open.set()
        loading.join(10)
        assert sorted(mgr.loaded()) == sorted(f"echo-{n}:{tiny_model.path}" for n in ("other", "new"))
    finally:
        gate.open.set()
        mgr.close()
