"""A LoRA fine-tune of the tiny model (adapter B initialised non-zero, so merging changes the
weights) and, once per session, its exports in every format."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support_adapters import FT_ID, make_adapter, register_ft


@pytest.fixture(scope="session")
def adapter_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapter") / "lora")


@pytest.fixture
def tiny_ft(tiny_model, adapter_dir: Path):
    """The fine-tune registered in this test's home (beside ``tiny-random``)."""
    return register_ft(adapter_dir)


EXPORTS = [("hf", "none"), ("onnx", "none"), ("onnx", "int8"), ("onnx", "int4"),
           ("gguf", "f16"), ("gguf", "q8_0"), ("gguf", "q4_1")]


@pytest.fixture(scope="session")
def exports(tiny_model_dir: Path, adapter_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """{(format, quantize): ExportResult} of the tiny fine-tune, built once in a home of its own."""
    from tunery.export import export_model
    from tunery.models import ModelRecord, register
    from tunery.models.catalog import CATALOG

    root = tmp_path_factory.mktemp("exports")
    saved = os.environ.get("TUNERY_HOME")
    os.environ["TUNERY_HOME"] = str(root / "home")
    try:
        register(ModelRecord(id="tiny-random", kind="base", path=tiny_model_dir, source="builtin-tiny",
                             meta={"catalog": "tiny-random", "context_length": CATALOG["tiny-random"].context_length}))
        register_ft(adapter_dir)
        return {(fmt, q): export_model(FT_ID, fmt, root / f"{fmt}-{q}", quantize=q) for fmt, q in EXPORTS}
    finally:
        if saved is None:
            os.environ.pop("TUNERY_HOME", None)
        else:
            os.environ["TUNERY_HOME"] = saved
