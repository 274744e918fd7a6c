"""The one thread-count setting, for training and inference alike (``TUNERY_NUM_THREADS``, set by
``--threads`` on ``tunery serve``, ``tunery worker`` and ``tunery finetune``), and how tunery
opens an ONNX export: onnxruntime-genai's model and plain ONNX Runtime sessions, both with their
thread pool sized to the CPUs this process may use.

Why not the libraries' defaults: onnxruntime-genai leaves ``intra_op_num_threads`` unset, and on a
2-core machine its decoder then ran on one thread (single-stream decode of the int4 SmolLM2 export,
best of five interleaved rounds: 83.7 tokens/s with the default, 91.4 on one thread, 153.0 on two;
benchmarks/RESULTS.md).
The export folder itself stays portable: the thread count is chosen where the model is loaded, not
written into ``genai_config.json``.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from tunery.errors import InvalidInput

THREADS_ENV = "TUNERY_NUM_THREADS"
# The trainer's own variable until the setting became one; still read, with a warning, for one release.
_OLD_THREADS_ENV = "TUNERY_THREADS"


def env_threads() -> int | None:
    """``TUNERY_NUM_THREADS`` (e.g. 1 on a machine shared with other work), checked; ``None`` when
    it is not set."""
    name, env = THREADS_ENV, os.environ.get(THREADS_ENV, "").strip()
    if not env and os.environ.get(_OLD_THREADS_ENV, "").strip():
        name, env = _OLD_THREADS_ENV, os.environ[_OLD_THREADS_ENV].strip()
        warnings.warn(f"{_OLD_THREADS_ENV} is deprecated and will stop working in the next release: "
                      f"set {THREADS_ENV} instead", FutureWarning, stacklevel=2)
    if not env:
        return None
    if not env.isdigit() or int(env) < 1:
        raise InvalidInput(f"{name} must be a whole number of threads, at least 1; got {env!r}",
                           param=name, hint="unset it to use every CPU this process may run on")
    return int(env)


def cpu_threads() -> int:
    """Threads for training and inference: ``TUNERY_NUM_THREADS`` when set, else the CPUs this
    process may run on."""
    return env_threads() or _usable_cpus()


def use_threads(threads: int | None) -> None:
    """Make ``threads`` (a command's ``--threads``; ``None`` keeps the environment's) the setting of
    this process and of the processes it starts: the server's engines read it when they load a
    model, and the worker's training jobs inherit it."""
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise InvalidInput(f"threads must be a whole number, at least 1; got {threads!r}", param="threads")
        os.environ[THREADS_ENV] = str(threads)


def default_device() -> str:
    """Where training and the PyTorch serving engine run: the GPU when there is one (under
    torchrun with more than one rank, this rank's own: ``LOCAL_RANK``), else the CPU. Named
    explicitly, not left to the current CUDA device, which is GPU 0 for every rank until
    ``training.distributed.setup`` sets it."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        return f"cuda:{os.environ.get('LOCAL_RANK', 0)}"
    return "cuda"


def _usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def genai_model(folder: Path, threads: int | None = None) -> Any:
    """``onnxruntime_genai.Model`` for an export folder, its decoder session on ``threads`` threads.

    Without ``threads``: ``TUNERY_NUM_THREADS`` when set, else the folder's own
    ``intra_op_num_threads`` when its ``genai_config.json`` names one, else every usable CPU. The
    file is overlaid in memory, never changed."""
    import onnxruntime_genai as og

    config = og.Config(str(folder))
    options = {"intra_op_num_threads": threads or env_threads() or _configured_threads(folder) or _usable_cpus()}
    config.overlay(json.dumps({"model": {"decoder": {"session_options": options}}}))
    return og.Model(config)


def _configured_threads(folder: Path) -> int | None:
    try:
        cfg = json.loads((Path(folder) / "genai_config.json").read_text())
        value = cfg["model"]["decoder"]["session_options"].get("intra_op_num_threads")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # onnxruntime-genai reads the file itself and names what is wrong with it
    return value if isinstance(value, int) and value > 0 else None


def ort_session(path: Path, threads: int | None = None) -> Any:
    """A CPU ``onnxruntime.InferenceSession`` for one ``.onnx`` file, quiet, on ``threads`` threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads or cpu_threads()
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
