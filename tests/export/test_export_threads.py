"""ONNX exports are opened with their thread pool sized to the usable CPUs (or TUNERY_NUM_THREADS):
onnxruntime-genai's own default ran the decoder on one thread of two here. The pool is seen as
the process's OS threads: a session on N intra-op threads starts N - 1 workers. (The thread
setting itself is tested in tests/core/test_runtime.py.)"""

from __future__ import annotations

import gc
import os
import time

import numpy as np

from tunery.runtime import genai_model, ort_session


def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _settled_threads() -> int:
    """The OS thread count once the models dropped before have let their threads go."""
    gc.collect()
    last, deadline = _os_threads(), time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = _os_threads()
        if now == last:
            return now
        last = now
    return last


def _threads_started(load) -> int:
    """OS threads alive after ``load()`` returns and its model has run one step, less those before."""
    import onnxruntime_genai as og

    before = _settled_threads()
    model = load()
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=6, do_sample=False)
    gen = og.Generator(model, params)
    gen.append_tokens(np.array([1, 2, 3], dtype=np.int32))
    gen.generate_next_token()
    started = _os_threads() - before
    del gen, params, model
    return started


def test_genai_model_runs_on_the_threads_asked(exports, monkeypatch):
    folder = exports[("onnx", "int4")].path
    _threads_started(lambda: genai_model(folder, 1))  # onnxruntime-genai's own process-wide threads
    one = _threads_started(lambda: genai_model(folder, 1))
    assert _threads_started(lambda: genai_model(folder, 4)) - one == 3
    monkeypatch.setenv("TUNERY_NUM_THREADS", "3")
    assert _threads_started(lambda: genai_model(folder)) - one == 2
    # the folder's own config is overlaid, never rewritten
    assert "intra_op_num_threads" not in (folder / "genai_config.json").read_text()


def test_a_thread_count_in_the_folders_own_config_is_kept(exports, monkeypatch, tmp_path):
    """A user who put intra_op_num_threads in genai_config.json gets it; TUNERY_NUM_THREADS still wins."""
    import json
    import shutil

    src = exports[("onnx", "int4")].path
    folder = shutil.copytree(src, tmp_path / "pinned")
    cfg = json.loads((folder / "genai_config.json").read_text())
    pinned = len(os.sched_getaffinity(0)) + 2  # never what the default would give
    cfg["model"]["decoder"]["session_options"]["intra_op_num_threads"] = pinned
    (folder / "genai_config.json").write_text(json.dumps(cfg))
    monkeypatch.delenv("TUNERY_NUM_THREADS", raising=False)
    _threads_started(lambda: genai_model(folder, 1))
    one = _threads_started(lambda: genai_model(folder, 1))
    assert _threads_started(lambda: genai_model(folder)) - one == pinned - 1
    monkeypatch.setenv("TUNERY_NUM_THREADS", "1")
    assert _threads_started(lambda: genai_model(folder)) - one == 0


def test_ort_session_runs_on_the_threads_asked(exports):
    path = exports[("onnx", "none")].path / "model.onnx"
    before = _settled_threads()
    s1 = ort_session(path, 1)
    one = _os_threads() - before
    s3 = ort_session(path, 3)
    assert _os_threads() - before - one == 2
    assert s1.get_session_options().intra_op_num_threads == 1
    assert s3.get_session_options().intra_op_num_threads == 3


def test_the_onnx_engine_takes_tunery_num_threads(exports, monkeypatch):
    from tunery.chat import ChatMessage, GenerationParams, Role
    from tunery.serving.onnx_engine import OnnxChatModel

    folder = exports[("onnx", "none")].path
    started = {}
    for n in ("1", "3", "1"):
        monkeypatch.setenv("TUNERY_NUM_THREADS", n)
        before = _settled_threads()
        model = OnnxChatModel(folder)
        model.generate([ChatMessage(Role.USER, "Hi")], GenerationParams(max_tokens=2, temperature=0))
        started[n] = _os_threads() - before
        model.close()
        del model  # its session's threads go with it
    assert started["3"] - started["1"] == 2
