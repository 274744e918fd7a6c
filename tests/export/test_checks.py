"""Format checks, the GGUF pieces on their own, and an export that disagrees with its source
being refused."""

from __future__ import annotations

import numpy as np
import pytest

from tunery.errors import Conflict, InvalidInput, NotFound


def test_check_format_defaults_and_refusals():
    from tunery.export import check_format

    assert check_format("onnx", None) == ("onnx", "none")
    assert check_format("GGUF", None) == ("gguf", "f16")
    assert check_format("onnx", "fp32") == ("onnx", "none")
    with pytest.raises(InvalidInput, match="does not apply to the gguf format") as e:
        check_format("gguf", "int4")
    assert e.value.param == "quantize" and "q4_0" in e.value.hint
    with pytest.raises(InvalidInput, match="unknown export format"):
        check_format("tflite", None)


def test_permutation_is_undone_by_the_transformers_gguf_loader():
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    from tunery.export.gguf_export import permute_qk

    w = np.random.default_rng(0).standard_normal((4 * 16, 64)).astype(np.float32)
    k = w[:2 * 16]
    assert not np.allclose(permute_qk(w, 4), w)
    loader = LlamaTensorProcessor(config={"num_attention_heads": 4, "num_key_value_heads": 2})
    np.testing.assert_array_equal(loader.process(permute_qk(w, 4), "blk.0.attn_q.weight").weights, w)
    np.testing.assert_array_equal(loader.process(permute_qk(k, 2), "blk.0.attn_k.weight").weights, k)


@pytest.mark.parametrize("quant", ["q8_0", "q4_0", "q4_1"])
def test_block_quantization_matches_gguf_reference(quant):
    import gguf
    from gguf import quants

    from tunery.export.gguf_export import GGUF_TYPES

    qtype = gguf.GGMLQuantizationType[GGUF_TYPES[quant]]
    w = np.random.default_rng(1).standard_normal((8, 64)).astype(np.float32) * 0.05
    back = quants.dequantize(quants.quantize(w, qtype), qtype)
    step = (w.max() - w.min()) / (255 if quant == "q8_0" else 15)
    assert np.abs(back - w).max() <= step


def test_modelfile_for_chatml_and_other_templates():
    from tunery.export.ollama import default_system, modelfile
    from tunery.models.catalog import CHATML_TEMPLATE

    text = modelfile("model-q4_1.gguf", CHATML_TEMPLATE)
    assert text.startswith("FROM ./model-q4_1.gguf\n")
    assert "{{ .Content }}<|im_end|>" in text and 'PARAMETER stop "<|im_end|>"' in text
    assert default_system(CHATML_TEMPLATE) == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    other = modelfile("m.gguf", "{{ bos_token }}{% for m in messages %}[INST] {{ m.content }}{% endfor %}")
    assert "TEMPLATE" not in other.replace("# TEMPLATE", "")


def test_broken_export_is_refused_and_nothing_written(tiny_ft, tmp_path, monkeypatch):
    """Skip the q/k permutation llama.cpp needs: the GGUF file then computes something else, the
    check notices, and the output folder is never created."""
    from tunery.export import ExportVerificationFailed, export_model, gguf_export

    monkeypatch.setattr(gguf_export, "permute_qk", lambda w, n: w)
    out = tmp_path / "broken"
    with pytest.raises(ExportVerificationFailed, match="does not agree") as e:
        export_model(tiny_ft.id, "gguf", out, quantize="f16")
    assert not e.value.report.passed and e.value.report.top1_agreement < 0.95
    assert not out.exists()
    assert not list(tmp_path.glob(".broken.*"))  # no half-written temporary folder left behind


def test_output_folder_is_not_overwritten_without_force(tiny_ft, tmp_path):
    from tunery.export import export_model

    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    # --force replaces an earlier export, never a folder of the user's own: so the refusal
    # without it does not send the user to --force
    for force in (False, True):
        with pytest.raises(Conflict, match="not a tunery export folder") as e:
            export_model(tiny_ft.id, "hf", out, force=force)
        assert "pass --force" not in e.value.hint
    assert (out / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    (out / "keep.txt").unlink()
    first = export_model(tiny_ft.id, "hf", out, greedy_tokens=2)
    with pytest.raises(Conflict, match="already holds an export") as e:
        export_model(tiny_ft.id, "hf", out)
    assert "--force" in e.value.hint
    (out / "notes.md").write_text("mine")  # a file the user put in the export: not replaced
    for force in (False, True):
        with pytest.raises(Conflict, match=r"holds files it did not write \(notes.md\)") as e:
            export_model(tiny_ft.id, "hf", out, force=force)
        assert "pass --force" not in e.value.hint
    assert (out / "notes.md").read_text() == "mine"
    (out / "notes.md").unlink()
    (out / "config.json").write_text("{}")  # the earlier export, changed: replaced whole
    assert export_model(tiny_ft.id, "hf", out, force=True, greedy_tokens=2).files == first.files
    assert (out / "config.json").read_text() != "{}"


def test_outputs_an_export_cannot_take_are_refused_before_any_work(tiny_ft, tmp_path, monkeypatch):
    """A file, and a mount point (a Docker volume, `-o /out`): the finished folder is renamed into
    place, which a mount point refuses (EBUSY) after all the work; both are refused up front, with
    the fix."""
    import os
    from pathlib import Path

    from tunery.export import export_model, hf_folder

    monkeypatch.setattr(hf_folder, "write_merged", lambda *a: pytest.fail("the export started"))
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(InvalidInput, match="exists and is not a folder") as e:
        export_model(tiny_ft.id, "hf", tmp_path / "a-file")
    assert "-o" in e.value.hint
    volume = tmp_path / "volume"
    volume.mkdir()
    real = os.path.ismount
    monkeypatch.setattr(os.path, "ismount", lambda p: Path(p) == volume or real(p))
    with pytest.raises(InvalidInput, match="is a mount point") as e:
        export_model(tiny_ft.id, "hf", volume)
    assert e.value.param == "output" and str(volume / "export") in e.value.hint


def test_every_file_of_an_export_is_readable_as_the_umask_allows(exports):
    """safetensors, and GPTQ's ONNX data, were written 0600 beside 0644 files: an export copied to
    a server, or served by another user, could read its tokenizer but not its weights."""
    import os
    import stat

    mask = os.umask(0o022)
    os.umask(mask)
    for res in exports.values():
        modes = {f: oct(stat.S_IMODE((res.path / f).stat().st_mode)) for f in res.files}
        assert modes == dict.fromkeys(res.files, oct(0o666 & ~mask)), res.path


def test_reading_a_gguf_export_back_draws_no_progress_bar(exports, capfd):
    """The check loads a GGUF export with transformers, whose GGUF reader draws its own tqdm bar
    ("Converting and de-quantizing GGUF tensors...") on stderr, under the CLI's spinner."""
    from tunery.compiled.scorers import load_torch

    res = exports[("gguf", "q8_0")]
    load_torch(res.path, next(f for f in res.files if f.endswith(".gguf")))
    err = capfd.readouterr().err
    assert "GGUF" not in err and "%|" not in err, err


def test_a_registered_export_is_not_exported_again(exports, tiny_ft, tmp_path):
    """`tunery deploy DIR` registers the folder as a model; exporting that model crashed in
    transformers (no config.json) instead of naming the model to export."""
    from tunery.export import export_model, register_export

    rec = register_export(exports[("onnx", "int4")].path)
    with pytest.raises(InvalidInput, match="is itself an export") as e:
        export_model(rec.id, "gguf", tmp_path / "again")
    assert f"tunery export {tiny_ft.id} " in e.value.hint
    assert not (tmp_path / "again").exists()


def test_a_second_folder_of_the_same_export_deploys_under_a_numbered_name(exports, tiny_ft, tmp_path):
    """A copy (or a second export) of the same source and quantization: the default model name was
    taken, and the refusal sent the user to --name, which names the deployment, not the model."""
    import shutil

    from click.testing import CliRunner

    from tunery.cli.main import cli
    from tunery.export import register_export
    from tunery.serving import deployments

    first = exports[("onnx", "int8")].path
    copy = tmp_path / "copy"
    shutil.copytree(first, copy)
    for folder, name in ((first, "a"), (copy, "b"), (copy, "c")):
        r = CliRunner().invoke(cli, ["deploy", str(folder), "--name", name])
        assert r.exit_code == 0, r.output
    models = [deployments.get(n).model for n in "abc"]
    assert models == [f"{tiny_ft.id}-onnx-int8", f"{tiny_ft.id}-onnx-int8-2", f"{tiny_ft.id}-onnx-int8-2"]
    assert register_export(first).id == models[0]  # each folder keeps its name


def test_an_export_is_not_named_after_a_deployment(tiny_model, tmp_path):
    """The default model name of a deployed export folder was a deployment's: the refusal said to
    pick another name, and `tunery deploy --name` names the deployment, not the model."""
    from click.testing import CliRunner

    from tunery.cli.main import cli
    from tunery.serving import deployments

    deployments.create("tiny-random-onnx-int8", "tiny-random")
    (tmp_path / "tunery-export.json").write_text('{"format": "onnx", "quantize": "int8", "source_model": "tiny-random"}')
    r = CliRunner().invoke(cli, ["deploy", str(tmp_path), "--name", "mine"])
    assert r.exit_code == 0, r.output
    assert deployments.get("mine").model == "tiny-random-onnx-int8-2"


def test_a_folder_deployed_while_it_is_exported_again_is_not_replaced(tiny_model, tmp_path, monkeypatch):
    """`_check_output` ran only before the minutes of work: a `tunery deploy DIR` meanwhile had the
    export --force replace the folder under the deployment, which then served another model."""
    from tunery.export import MANIFEST, export_model, hf_folder, register_export

    out = tmp_path / "old"
    out.mkdir()
    old = '{"format": "onnx", "quantize": "int8", "source_model": "tiny-random", "files": []}'
    (out / MANIFEST).write_text(old)
    write_merged = hf_folder.write_merged

    def deployed_meanwhile(*args):
        register_export(out)
        write_merged(*args)

    monkeypatch.setattr(hf_folder, "write_merged", deployed_meanwhile)
    with pytest.raises(Conflict, match="served as model tiny-random-onnx-int8"):
        export_model("tiny-random", "hf", out, force=True)
    assert [p.name for p in out.iterdir()] == [MANIFEST] and (out / MANIFEST).read_text() == old


def test_an_export_never_takes_a_folder_tunery_keeps_its_state_in(tiny_model, monkeypatch):
    """A new home's folders are empty, so `-o $TUNERY_HOME/models` was taken: deployed, then removed,
    the export deleted the folder, and every fine-tune stored in it."""
    from tunery.compiled.cache import compiled_root
    from tunery.export import export_model, hf_folder
    from tunery.home import home

    monkeypatch.setattr(hf_folder, "write_merged", lambda *a: pytest.fail("the export started"))
    h = home().ensure()
    for folder in (h.models, h.files, h.jobs, h.root / "flows", compiled_root()):
        with pytest.raises(InvalidInput, match="a folder tunery keeps its own state in") as e:
            export_model("tiny-random", "hf", folder)
        assert e.value.param == "output" and str(h.root / "exports") in e.value.hint
    assert not any(h.models.iterdir())


def test_unknown_model_names_the_next_step(tiny_model, tmp_path):
    from tunery.export import export_model

    with pytest.raises(NotFound, match="unknown model"):
        export_model("no-such-model", "onnx", tmp_path / "x")


def test_register_export_only_takes_onnx_exports(exports, tunery_home):
    from tunery.export import register_export

    with pytest.raises(InvalidInput, match="only ONNX exports"):
        register_export(exports[("gguf", "q8_0")].path)
    with pytest.raises(NotFound, match="not a tunery export folder"):
        register_export(exports[("gguf", "q8_0")].path.parent)
    rec = register_export(exports[("onnx", "int4")].path, "travel-int4")
    assert rec.meta["engine"] == "onnx" and rec.source == "onnx-export" and not rec.is_adapter
    assert register_export(exports[("onnx", "int4")].path, "travel-int4") == rec  # idempotent
    with pytest.raises(Conflict):
        register_export(exports[("onnx", "none")].path, "travel-int4")


def test_deploying_a_folder_that_is_not_an_export_names_what_it_lacks(tunery_home, tmp_path):
    from click.testing import CliRunner

    from tunery.cli.main import cli

    folder = tmp_path / "adir"
    folder.mkdir()
    r = CliRunner().invoke(cli, ["deploy", str(folder), "--name", "x"])
    assert isinstance(r.exception, InvalidInput) and r.exception.param == "model"
    assert "is a folder but not a tunery export (it has no tunery-export.json)" in r.exception.message


def test_a_served_export_folder_is_not_replaced_even_with_force(exports, tiny_ft, monkeypatch):
    """`tunery deploy DIR` serves the folder itself: `export --force -o DIR` replaced it under the
    deployment, which then served another export under the old name (or failed to load)."""
    from click.testing import CliRunner

    from tunery.cli.main import cli
    from tunery.export import export_model, hf_folder
    from tunery.models import registry

    folder = exports[("onnx", "int8")].path
    r = CliRunner().invoke(cli, ["deploy", str(folder), "--name", "served"])
    assert r.exit_code == 0, r.output
    model = f"{tiny_ft.id}-onnx-int8"
    before = sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())
    monkeypatch.setattr(hf_folder, "write_merged", lambda *a: pytest.fail("the export started"))
    with pytest.raises(Conflict, match=f"served as model {model}, deployed as served") as e:
        export_model(tiny_ft.id, "gguf", folder, quantize="q8_0", force=True)
    assert e.value.hint.startswith(f"`tunery deployments delete served`, then `tunery models remove {model}` (")
    r = CliRunner().invoke(cli, ["deployments", "delete", "served"])
    assert r.exit_code == 0, r.output
    with pytest.raises(Conflict, match=f"served as model {model}, so it is not replaced") as e:
        export_model(tiny_ft.id, "gguf", folder, quantize="q8_0", force=True)
    assert e.value.hint.startswith(f"`tunery models remove {model}` (")
    registry.remove(model)
    assert sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir()) == before  # the folder stayed
    with pytest.raises(pytest.fail.Exception, match="the export started"):  # and now it may be replaced
        export_model(tiny_ft.id, "gguf", folder, quantize="q8_0", force=True)
