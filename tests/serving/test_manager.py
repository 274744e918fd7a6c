"""The engine manager: one engine per set of weights, LRU unloading, and engines plugged in by
name behind the same contract."""

from __future__ import annotations

import shutil

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
        assert second is not first and mgr.loaded() == [f"torch:{copy}"]
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
