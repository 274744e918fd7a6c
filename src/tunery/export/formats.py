"""The export formats, the quantizations each accepts, and how closely each must agree with the
source model before an export is reported done.

Thresholds are per quantization, not per format: a lossless export (``hf``, ONNX ``none``) must
reproduce the source's greedy answers almost token for token, a quantized one only has to keep
its loss close (greedy answers of a 4-bit model legitimately drift after a few tokens)."""

from __future__ import annotations

from tunery.compiled.verify import Tolerance
from tunery.errors import InvalidInput

FORMATS = ("hf", "onnx", "gguf")

QUANTIZATIONS: dict[str, tuple[str, ...]] = {
    "hf": ("none",),
    "onnx": ("none", "int8", "int4"),
    "gguf": ("f16", "q8_0", "q4_0", "q4_1"),
}
"""The first entry is each format's default."""

MANIFEST = "tunery-export.json"
"""Written last into every export folder: its presence means the export is complete and verified."""


TOLERANCES: dict[tuple[str, str], Tolerance] = {
    ("hf", "none"): Tolerance(min_greedy=0.95, min_top1=0.99, max_loss_delta=0.002),
    ("onnx", "none"): Tolerance(min_greedy=0.9, min_top1=0.98, max_loss_delta=0.005),
    ("onnx", "int8"): Tolerance(min_greedy=0.0, min_top1=0.85, max_loss_delta=0.03),
    ("onnx", "int4"): Tolerance(min_greedy=0.0, min_top1=0.6, max_loss_delta=0.10),
    ("gguf", "f16"): Tolerance(min_greedy=0.6, min_top1=0.95, max_loss_delta=0.01),
    ("gguf", "q8_0"): Tolerance(min_greedy=0.0, min_top1=0.85, max_loss_delta=0.03),
    ("gguf", "q4_0"): Tolerance(min_greedy=0.0, min_top1=0.6, max_loss_delta=0.15),
    ("gguf", "q4_1"): Tolerance(min_greedy=0.0, min_top1=0.6, max_loss_delta=0.10),
}


def check_format(fmt: str, quantize: str | None) -> tuple[str, str]:
    """Validate a format and quantization pair; returns it with the format's default filled in."""
    fmt = (fmt or "").lower()
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown export format {fmt!r}", param="format",
                           hint=f"use one of: {', '.join(FORMATS)}")
    allowed = QUANTIZATIONS[fmt]
    q = (quantize or allowed[0]).lower()
    if fmt == "onnx" and q in ("fp32", "float32"):
        q = "none"
    if q not in allowed:
        raise InvalidInput(f"--quantize {q} does not apply to the {fmt} format", param="quantize",
                           hint=f"{fmt} takes: {', '.join(allowed)}")
    return fmt, q


def tolerance(fmt: str, quantize: str) -> Tolerance:
    return TOLERANCES[(fmt, quantize)]
