"""Exporting a checkpoint of a job that started from a LoRA fine-tune: the checkpoint holds only the
adapter trained over that fine-tune merged in, so the export merges both (stacked, as it is
served), not the checkpoint's adapter alone onto the base."""

from __future__ import annotations

import torch

from support_adapters import checkpoint_of_ft
from tunery.chat import ChatMessage, Role

HI = [ChatMessage(Role.USER, "Hello! Where should I travel?")]


def test_the_exported_checkpoint_is_the_model_it_stands_for(tiny_model, chat_file, tmp_path):
    from transformers import AutoModelForCausalLM

    from tunery.chat_template import prompt_ids
    from tunery.export.api import export_model
    from tunery.models.loading import load_tokenizer
    from tunery.serving import GenerationParams
    from tunery.serving.local import LocalChatModel

    name, reference, _ = checkpoint_of_ft(tiny_model, chat_file, tmp_path)
    export_model(name, "hf", tmp_path / "out")
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype=torch.float32).eval()
    # the merged weights are the first fine-tune's and the checkpoint's adapters both merged in
    expect = {k: v for k, v in reference.merge_and_unload().state_dict().items()}
    got = exported.state_dict()
    assert set(got) == set(expect)
    assert all(torch.allclose(got[k], expect[k], atol=1e-5) for k in expect)
    # and its greedy words are the served checkpoint's at fp32
    tok = load_tokenizer(tiny_model)
    ids = torch.tensor([prompt_ids(tok, HI)])
    with torch.no_grad():
        out = exported.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False)
    served = LocalChatModel(name, precision="fp32").generate(HI, GenerationParams(max_tokens=6, temperature=0))
    assert tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True) == served.text
