"""The light tokenizer (``tunery.models.light_tokenizer``) against transformers' own tokenizer: the
same rendered chats (with tools, without a system role, with a generation prompt), ids and decoded
text, on SmolLM2's real tokenizer, every tiny family's template, extra templates in
``additional_chat_templates`` and added tokens whose settings the config changes; the template
sandbox refuses what transformers' refuses; a difference is caught; and
``load_tokenizer(light=True)`` uses it only after it agreed, without importing transformers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tunery.chat import ChatMessage, Role
from tunery.models.light_tokenizer import LightTokenizer, snapshot, verify
from tunery.models.tiny import FAMILIES, build_tiny_model

CHAT = [ChatMessage(Role.SYSTEM, "Be brief."), ChatMessage(Role.USER, "Où aller à Rome ? 🚀"),
        ChatMessage(Role.ASSISTANT, "Au Colisée."), ChatMessage(Role.USER, "Et après ?")]
TOOLS = [{"type": "function", "function": {"name": "get_time", "description": "Local time",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
CALL = [*[m.to_dict() for m in CHAT[:2]],
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_time", "arguments": '{"city": "Rome"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": '{"time": "10:00"}'}]


def _pair(folder):
    from transformers import AutoTokenizer

    full = AutoTokenizer.from_pretrained(folder)
    return LightTokenizer.from_snapshot(snapshot(full), lambda: full), full


def _same_everywhere(light, full):
    from tunery.chat_template import prompt_ids, render

    assert verify(light, full) is None
    for messages, tools in ((CHAT, None), (CHAT, TOOLS), (CALL, TOOLS)):
        for gen in (False, True):
            text = render(full, messages, generation_prompt=gen, tools=tools)
            assert render(light, messages, generation_prompt=gen, tools=tools) == text
        ids = prompt_ids(full, messages, tools=tools)
        assert prompt_ids(light, messages, tools=tools) == ids
        assert light.decode(ids, skip_special_tokens=True) == full.decode(ids, skip_special_tokens=True)
    assert (light.eos_token_id, light.pad_token_id, light.bos_token_id) == \
        (full.eos_token_id, full.pad_token_id, full.bos_token_id)


@pytest.mark.slow
def test_smollm2s_real_tokenizer_is_rendered_encoded_and_decoded_the_same(smollm2_dir):
    light, full = _pair(smollm2_dir)
    _same_everywhere(light, full)
    enc = light(["Hello world", " Ünïcödé"], add_special_tokens=False, return_offsets_mapping=True)
    assert enc["offset_mapping"] == full(["Hello world", " Ünïcödé"], add_special_tokens=False,
                                         return_offsets_mapping=True)["offset_mapping"]


@pytest.mark.parametrize("family", ["llama", *sorted(f for f in FAMILIES if f != "llama")])
def test_every_familys_template_renders_the_same(family, tmp_path):
    # qwen3 renders tools natively; gemma raises on a system role (tunery folds it first); qwen2's
    # class adds an unk_token no file names (the snapshot keeps transformers' special tokens)
    _same_everywhere(*_pair(build_tiny_model(tmp_path / family, arch=family)))


def test_extra_templates_and_changed_added_tokens_are_taken_as_transformers_takes_them(tiny_model_dir, tmp_path):
    copy = shutil.copytree(tiny_model_dir, tmp_path / "copy")
    (copy / "additional_chat_templates").mkdir()
    (copy / "additional_chat_templates" / "tool_use.jinja").write_text(
        "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}{{ tools | tojson }}"
        "{% if add_generation_prompt %}[assistant]{% endif %}")
    # the config gives an added token other settings than tokenizer.json: transformers re-adds it
    added = json.loads((copy / "tokenizer.json").read_text())["added_tokens"][-1]
    cfg = json.loads((copy / "tokenizer_config.json").read_text())
    cfg["added_tokens_decoder"] = {str(added["id"]): {**{k: v for k, v in added.items() if k != "id"},
                                                      "lstrip": True, "rstrip": True}}
    (copy / "tokenizer_config.json").write_text(json.dumps(cfg))
    light, full = _pair(copy)
    assert isinstance(full.chat_template, dict) and light.chat_template == full.chat_template
    _same_everywhere(light, full)
    text = f"a  {added['content']}  b"
    assert light(text, add_special_tokens=False)["input_ids"] == full(text, add_special_tokens=False)["input_ids"]


def test_the_sandbox_refuses_what_transformers_refuses(tiny_model_dir):
    import jinja2

    light, full = _pair(tiny_model_dir)
    for template in ("{% set ns = namespace(_x=1) %}x", "{% set ns = namespace() %}{% set ns._y = 2 %}x"):
        for tok in (light, full):
            with pytest.raises(jinja2.exceptions.SecurityError):
                tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, chat_template=template)
    # an object that is not plain data reaches a template as an inert placeholder, in both
    msg = [{"role": "user", "content": "hi", "extra": object()}]
    template = "{{ messages[0].extra }}"
    assert light.apply_chat_template(msg, tokenize=False, chat_template=template) == \
        full.apply_chat_template(msg, tokenize=False, chat_template=template) == "<object>"


def test_a_difference_is_named(tiny_model_dir):
    light, full = _pair(tiny_model_dir)
    light.chat_template = light.chat_template + "{{ '!' }}"
    assert verify(light, full) == "the chat templates differ"
    light, full = _pair(tiny_model_dir)
    light._special["eos_token"] = full.bos_token  # noqa: SLF001
    assert "special tokens differ" in verify(light, full)
    state = snapshot(full)
    assert LightTokenizer.from_snapshot({**state, "version": -1}, lambda: full) is None
    assert LightTokenizer.from_snapshot({**state, "backend": "{"}, lambda: full) is None


def test_what_it_does_not_do_itself_is_delegated(tiny_model_dir):
    light, full = _pair(tiny_model_dir)
    batch = light(["a b", "a"], padding=True, add_special_tokens=False)  # padding: transformers'
    assert batch["input_ids"] == full(["a b", "a"], padding=True, add_special_tokens=False)["input_ids"]
    assert light.apply_chat_template([m.to_dict() for m in CHAT], tokenize=True) == \
        full.apply_chat_template([m.to_dict() for m in CHAT], tokenize=True)
    assert light.model_max_length == full.model_max_length  # an attribute it lacks
    light.pad_token = light.eos_token
    assert light.pad_token_id == light.eos_token_id


def test_load_tokenizer_uses_it_only_after_it_agreed_and_then_imports_no_transformers(tiny_model, tmp_path):
    from tunery.home import home
    from tunery.models.loading import LIGHT_TOKENIZERS, load_tokenizer

    first = load_tokenizer(tiny_model, light=True)  # transformers' own, and the check
    assert not isinstance(first, LightTokenizer)
    (name,) = json.loads((home().cache / LIGHT_TOKENIZERS).read_text()).values()  # its snapshot's name
    assert (home().cache / "light-tokenizers" / f"{name}.json").is_file()
    assert (home().cache / "light-tokenizers" / f"{name}.tokenizer.json").is_file()
    assert not isinstance(load_tokenizer(tiny_model), LightTokenizer)  # only where asked for
    again = load_tokenizer(tiny_model, light=True)
    assert isinstance(again, LightTokenizer) and load_tokenizer(tiny_model, light=True) is again
    from tunery.chat_template import prompt_ids

    assert prompt_ids(again, CHAT) == prompt_ids(first, CHAT)
    # a fine-tune's folder: the same tokenizer files beside its own (another key), the same snapshot
    from tunery.models import ModelRecord

    copy = shutil.copytree(tiny_model.path, tmp_path / "ft", ignore=shutil.ignore_patterns("*.safetensors"))
    (copy / "adapter_config.json").write_text("{}")
    ft = ModelRecord(id="ft", kind="base", path=copy, source="test")
    load_tokenizer(ft, light=True)
    assert load_tokenizer(ft, light=True) is again
    assert len(json.loads((home().cache / LIGHT_TOKENIZERS).read_text())) == 2
    assert len(list((home().cache / "light-tokenizers").glob("*.tokenizer.json"))) == 1
    # a fresh process: the light tokenizer, and no transformers
    code = ("import sys\nfrom tunery.models.loading import load_tokenizer\nfrom tunery.chat_template import prompt_ids\n"
            "from tunery.chat import ChatMessage, Role\n"
            f"t = load_tokenizer({tiny_model.id!r}, light=True)\n"
            "print(type(t).__name__, 'transformers' in sys.modules, prompt_ids(t, [ChatMessage(Role.USER, 'hi')]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True).stdout
    assert out.split(" ", 2)[:2] == ["LightTokenizer", "False"]
    assert out.split(" ", 2)[2].strip() == str(prompt_ids(first, [ChatMessage(Role.USER, "hi")]))


def test_a_verdict_against_it_keeps_transformers(tiny_model):
    from tunery.home import atomic_write_json, home
    from tunery.models.loading import LIGHT_TOKENIZERS, load_tokenizer

    load_tokenizer(tiny_model, light=True)
    memo = home().cache / LIGHT_TOKENIZERS
    (key, name), = json.loads(memo.read_text()).items()
    assert (home().cache / "light-tokenizers" / f"{name}.json").is_file()
    assert "@snapshot " in key and "@transformers " in key  # another version checks again
    atomic_write_json(memo, {key: "the chat template renders differently"})
    assert not isinstance(load_tokenizer(tiny_model, light=True), LightTokenizer)
    assert json.loads(memo.read_text())[key] == "the chat template renders differently"  # until the files change


def test_constrained_decoding_gets_the_same_llguidance_tokenizer_from_it(tiny_model_dir):
    import llguidance.hf

    from tunery.serving.constrained import _ll_tokenizer

    light, full = _pair(tiny_model_dir)
    ours, theirs = _ll_tokenizer(light), llguidance.hf.from_tokenizer(full)
    assert (ours.vocab_size, ours.eos_token) == (theirs.vocab_size, theirs.eos_token)
    for text in ("Hello world", '{"city": "Oslo"}', " Ünïcödé 🚀"):
        assert ours.tokenize_str(text) == theirs.tokenize_str(text)
    assert ours.decode_str(ours.tokenize_str("a b")) == "a b"
