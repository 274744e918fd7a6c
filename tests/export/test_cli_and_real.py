"""`tunery export` at the CLI edge, and one round trip with the real default model (slow)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tunery.cli.main import cli


def test_cli_exports_and_reports_the_check(tiny_ft, tmp_path):
    out = tmp_path / "q8"
    res = CliRunner().invoke(cli, ["export", tiny_ft.id, "-f", "gguf", "-q", "q8_0", "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    out_text = res.stdout
    data = json.loads(out_text[out_text.index("{"):])
    assert data["format"] == "gguf" and data["verification"]["passed"] is True
    assert (out / "model-q8_0.gguf").exists() and (out / "Modelfile").exists()


def test_cli_prints_paths_whole_and_commands_ready_to_paste(tiny_ft, tmp_path):
    """A path with spaces, brackets and an emoji code: printed as it is (not as markup or an emoji),
    on one line in an 80-column pipe, and quoted in the command to run next."""
    import shlex

    out = (tmp_path / "my exports" / "[v1] :new: café").resolve()
    res = CliRunner().invoke(cli, ["export", tiny_ft.id, "-f", "gguf", "-q", "q8_0", "-o", str(out)])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].startswith(f"exported {tiny_ft.id} as gguf (q8_0) to {out} ("), lines
    assert f"ollama create NAME -f {shlex.quote(str(out / 'Modelfile'))} or llama.cpp with " \
           f"{out / 'model-q8_0.gguf'}" in lines[-1]


def test_cli_bad_quantize_is_one_line_and_non_zero(tiny_ft, tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "tunery.cli.main", "export", tiny_ft.id, "-f", "onnx", "-q", "q4_0",
                           "-o", str(tmp_path / "x")], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "does not apply to the onnx format" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_real_default_model_onnx_int4_and_gguf_round_trip(smollm2, tmp_path):
    from tunery.chat import GenerationParams
    from tunery.export import export_model
    from tunery.serving.onnx_engine import OnnxChatModel

    onnx = export_model(smollm2.id, "onnx", tmp_path / "int4", quantize="int4", greedy_tokens=16)
    assert onnx.report.passed and abs(onnx.report.loss_delta) < 0.10, onnx.report.summary()
    assert onnx.size_bytes < 0.3 * 540e6  # a fifth of the float32 weights
    gguf = export_model(smollm2.id, "gguf", tmp_path / "q4", quantize="q4_1", greedy_tokens=16)
    assert gguf.report.passed and gguf.report.tokenizer_match, gguf.report.summary()

    # a fine-tune of the top ten layers, merged: its changed matrices leave the packaged Q4_1 grid,
    # and the mixed rule keeps them at 8 bits, so the 4-bit GGUF still passes its check
    from support_adapters import make_adapter, register_ft

    ft = register_ft(make_adapter(smollm2.path, tmp_path / "lora", scale=0.01, layers=list(range(20, 30))),
                     ft_id="ft:smollm2-135m-instruct:x:top10", parent=smollm2.id)
    tuned = export_model(ft.id, "gguf", tmp_path / "ft-q4", quantize="q4_1", greedy_tokens=16)
    assert tuned.report.passed and abs(tuned.report.loss_delta) < 0.02, tuned.report.summary()
    assert gguf.size_bytes < tuned.size_bytes < 0.3 * 540e6

    from tunery.chat import ChatMessage, Role

    model = OnnxChatModel(onnx.path)
    try:
        answer = model.generate([ChatMessage(Role.USER, "What is the capital of France?")],
                                GenerationParams(max_tokens=20, temperature=0))
    finally:
        model.close()
    assert "Paris" in answer.text


def test_deploy_an_onnx_export_folder_from_the_cli(tiny_model, exports):
    """`tunery deploy ./export-dir --name travel-int4` registers the export and deploys it."""
    from click.testing import CliRunner

    from tunery.cli.main import cli
    from tunery.models import get
    from tunery.serving import deployments

    folder = next(res.path for (fmt, _), res in exports.items() if fmt == "onnx")
    r = CliRunner().invoke(cli, ["deploy", str(folder), "--name", "travel-int4", "--tpm", "1000"])
    assert r.exit_code == 0, r.output
    dep = deployments.get("travel-int4")
    assert dep.tpm == 1000 and get(dep.model).meta.get("engine") == "onnx"
    # an export runs as it was exported: a precision asked for would be printed and not honoured
    r = CliRunner().invoke(cli, ["deploy", str(folder), "--name", "other", "--precision", "fp32"])
    assert r.exit_code == 1 and "is an export, served at the precision it was exported with (float32)" \
        in str(r.exception), r.output
    assert deployments.find("other") is None
