"""Export: a base model, fine-tune or checkpoint as a merged Hugging Face folder, an ONNX decoder
for ONNX Runtime (float32, int8 or int4) or a GGUF file for llama.cpp and Ollama; every export
verified against its source before it is reported done. ``register_export`` makes an ONNX export
servable by tunery's ONNX Runtime engine."""

from tunery.compiled.verify import DEFAULT_PROMPTS, DEFAULT_TEXTS, VerifyReport
from tunery.export.api import (
    ExportResult,
    ExportVerificationFailed,
    export_model,
    is_export_dir,
    read_manifest,
    register_export,
)
from tunery.export.formats import FORMATS, MANIFEST, QUANTIZATIONS, TOLERANCES, Tolerance, check_format

__all__ = [
    "DEFAULT_PROMPTS", "DEFAULT_TEXTS", "FORMATS", "MANIFEST", "QUANTIZATIONS", "TOLERANCES", "ExportResult",
    "ExportVerificationFailed", "Tolerance", "VerifyReport", "check_format", "export_model", "is_export_dir",
    "read_manifest", "register_export",
]
