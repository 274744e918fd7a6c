"""A checkpoint of a job that started from a LoRA fine-tune (``model: ft:...``) is servable: its
adapter was trained over the starting fine-tune merged into the base, so it is served stacked onto
that fine-tune's adapter, over the base (issue 18's known bug: only the final model served)."""

from __future__ import annotations

import pytest
import torch

from support_adapters import FT_ID, checkpoint_of_ft, second_adapter
from tunery.chat import ChatMessage, Role
from tunery.serving import GenerationParams
from tunery.serving.local import LocalChatModel

HI = [ChatMessage(Role.USER, "Hello! Where should I travel?")]


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_checkpoint_of_a_job_from_a_lora_fine_tune_is_served_as_trained(tiny_model, chat_file, tmp_path,
                                                                          precision):
    name, reference, _ = checkpoint_of_ft(tiny_model, chat_file, tmp_path)
    model = LocalChatModel(name, precision=precision)
    params = GenerationParams(max_tokens=6, temperature=0)
    got = model.generate(HI, params)
    assert got.model == name
    # greedy tokens equal to the PyTorch model the checkpoint stands for (first fine-tune merged,
    # the checkpoint's adapter on top), and not to the starting fine-tune's alone
    from tunery.chat_template import prompt_ids
    from tunery.models.loading import load_tokenizer

    tok = load_tokenizer(tiny_model)
    ids = torch.tensor([prompt_ids(tok, HI)])
    with torch.no_grad():
        out = reference.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False)
    expect = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert got.text == expect
    assert got.text != LocalChatModel(FT_ID, precision=precision).generate(HI, params).text
    from tunery.models import registry
    from tunery.serving.manager import serving_info

    info = serving_info(registry.get(name), precision)  # what `tunery models show` prints
    assert info["precision"] == precision and info["adapter_of"] == "tiny-random"


def test_the_stacked_adapter_follows_the_checkpoint_it_was_made_from(tiny_model, chat_file, tmp_path):
    """Written once into the checkpoint's folder, and again when the checkpoint's weights change."""
    from tunery.models import registry
    from tunery.models.stack import STACKED, on_root

    name, _, _ = checkpoint_of_ft(tiny_model, chat_file, tmp_path)
    rec = registry.get(name)
    assert rec.parent != "tiny-random" and rec.base_id == "tiny-random"  # /v1/models' root: the base, not the parent
    first = on_root(rec)
    assert (first.parent, first.path) == ("tiny-random", rec.path / STACKED)
    made = (first.path / "adapter_model.safetensors").stat().st_mtime_ns
    assert on_root(rec) == first and (first.path / "adapter_model.safetensors").stat().st_mtime_ns == made
    second_adapter(tiny_model.path, tmp_path / "first", rec.path)  # the job wrote this step again
    again = on_root(rec)
    assert (again.path / "adapter_model.safetensors").stat().st_mtime_ns != made
