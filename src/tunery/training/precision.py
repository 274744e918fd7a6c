"""The precision a fine-tune trains in, chosen by measuring the machine at hand, never by assuming.

CPUs of the same kind differ: with AVX-512 BF16 or AMX, bfloat16 matrix products run about twice
as fast as float32; on AVX2-only CPUs bfloat16 is emulated and slower. So ``auto`` (the default)
times a few training steps of a transformer-shaped block both ways at first use, once per CPU
model and torch version (the result is kept in ``TUNERY_HOME/cache``), and trains in bfloat16
autocast only where it is at least :data:`MIN_SPEEDUP` times faster. The trainer then checks the
model's own held-out loss in both precisions before the first step and keeps float32 when they
differ by more than :data:`LOSS_TOLERANCE` (:func:`loss_agrees`). On CUDA, ``auto`` is bfloat16
where the device supports it. ``fp32`` and ``bf16`` force a precision.

The probe must hold on a busy machine, since its answer is kept: it runs on one thread (on two, a
busy machine stalls each step until both threads are scheduled, which is noise, not the kernels'
speed), with float32 and bfloat16 steps taken in turns so that a busy spell slows both, and keeps
the best of each (the measurements behind it: benchmarks/RESULTS.md, training precision).

The weights, the optimizer state and the saved model stay in float32 either way: autocast only
runs the matrix products in bfloat16.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tunery.errors import InvalidInput

PRECISIONS = ("auto", "fp32", "bf16")
PRECISION_HELP = ("Training precision: auto (bf16 autocast where this machine runs it measurably faster and "
                  "the held-out loss agrees, else fp32), fp32 or bf16.")
MIN_SPEEDUP = 1.15
"""bfloat16 must beat float32 by this factor: below it the rounding is not worth it."""
LOSS_TOLERANCE = 0.01
"""Largest relative difference of the held-out loss, bfloat16 against float32, that is accepted."""
_CACHE_FILE = "train-precision.json"
_PROBE = "v2"  # in the cache key: a probe that measures differently is measured again
_memo: dict[str, Measurement] = {}


@dataclass(frozen=True)
class Measurement:
    """Seconds per training step of the probe block in each precision, on one machine."""

    machine: str
    fp32_s: float
    bf16_s: float

    @property
    def speedup(self) -> float:
        return self.fp32_s / self.bf16_s


@dataclass(frozen=True)
class Choice:
    """The precision to train in and why, in words a job event can carry."""

    precision: str
    reason: str


def check(value: str | None) -> str:
    value = (value or "auto").lower()
    if value not in PRECISIONS:
        raise InvalidInput(f"unknown training precision {value!r}; choose {', '.join(PRECISIONS)}",
                           param="precision")
    return value


def machine_signature() -> str:
    """What the measurement depends on: the CPU model and its bfloat16 instructions, torch, the probe."""
    import torch

    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    bf16 = sorted(flags & {"avx512_bf16", "amx_bf16", "avx512f", "avx2"})
    return f"{name} [{' '.join(bf16)}] torch {torch.__version__} probe {_PROBE}"


def measure(*, rounds: int = 7, tokens: int = 256) -> Measurement:
    """Time forward and backward of a transformer-shaped block (SmolLM2-135M's widths) in float32
    and in bfloat16 autocast, on one thread: ``rounds`` rounds of one step each, after one warm-up
    each, the best step of each kept. Where bfloat16 is emulated one step takes many times
    float32's (16x on an AVX2-only EPYC), so the rounds stop once three show it cannot win. First
    use costs under a second where bfloat16 is native (0.8 s on an AVX-512 EPYC), a few seconds
    where it is emulated (this probe was not timed on such a CPU)."""
    import torch

    torch.manual_seed(0)
    hidden, ffn = 576, 1536
    block = torch.nn.Sequential(torch.nn.Linear(hidden, 3 * hidden), torch.nn.Linear(3 * hidden, hidden),
                                torch.nn.Linear(hidden, ffn), torch.nn.SiLU(), torch.nn.Linear(ffn, hidden))
    x = torch.randn(tokens, hidden)

    def step(dtype) -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            loss = block(x).float().pow(2).mean()
        loss.backward()
        return time.perf_counter() - start

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return Measurement(machine_signature(), *_in_turns(lambda bf16: step(torch.bfloat16 if bf16 else None),
                                                           rounds))
    finally:
        torch.set_num_threads(previous)


def _in_turns(step: Callable[[bool], float], rounds: int) -> tuple[float, float]:
    """The best float32 and bfloat16 seconds of ``step(bf16)``, the two taken in turns after a
    warm-up of each, for ``rounds`` rounds or until three show bfloat16 at over four times float32's
    (emulated, it takes 16x; a busy spell over two rounds must not end the probe)."""
    step(False)
    step(True)
    fp32: list[float] = []
    bf16: list[float] = []
    while len(fp32) < rounds and (len(fp32) < 3 or min(bf16) < 4 * min(fp32)):
        fp32.append(step(False))
        bf16.append(step(True))
    return min(fp32), min(bf16)


def cpu_measurement() -> Measurement:
    """The measurement for this machine: from this process, the home's cache, or taken now."""
    from tunery.home import atomic_write_json, home

    key = machine_signature()
    if key in _memo:
        return _memo[key]
    path = home().cache / _CACHE_FILE
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if isinstance(cached.get(key), dict):
        m = Measurement(**cached[key])
    else:
        m = measure()
        cached[key] = asdict(m)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, cached)
    _memo[key] = m
    return m


def choose(requested: str | None, device: str) -> Choice:
    """The precision to train in on ``device`` for ``requested`` (``auto``, ``fp32``, ``bf16``)."""
    requested = check(requested)
    if requested != "auto":
        return Choice(requested, f"{requested} as requested")
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_bf16_supported():
            return Choice("bf16", "bf16 autocast: this GPU supports it")
        return Choice("fp32", "fp32: this GPU has no bfloat16")
    m = cpu_measurement()
    if m.speedup >= MIN_SPEEDUP:
        return Choice("bf16", f"bf16 autocast: {m.speedup:.2f}x faster than fp32 on this CPU (measured)")
    return Choice("fp32", f"fp32: bf16 is {m.speedup:.2f}x fp32's speed on this CPU (measured; "
                          f"{MIN_SPEEDUP:.2f}x needed)")


def loss_agrees(fp32_loss: float, bf16_loss: float) -> bool:
    """Whether the held-out loss in bfloat16 is within :data:`LOSS_TOLERANCE` of float32's."""
    return abs(bf16_loss - fp32_loss) <= LOSS_TOLERANCE * abs(fp32_loss)


def describe(m: Measurement) -> dict[str, Any]:
    return {**asdict(m), "speedup": round(m.speedup, 3)}
