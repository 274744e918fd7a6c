"""``load_tokenizer`` remembers the class ``AutoTokenizer`` chose for a set of tokenizer files and
loads through it next time: the same tokenizer, without the torch import ``AutoTokenizer`` costs."""

from __future__ import annotations

import json

from tunery.chat import ChatMessage, Role

CHAT = [ChatMessage(Role.SYSTEM, "Be brief."), ChatMessage(Role.USER, "Où aller à Rome ?"),
        ChatMessage(Role.ASSISTANT, "Au Colisée."), ChatMessage(Role.USER, "Et après ?")]


def _memo() -> dict:
    from tunery.home import home
    from tunery.models.loading import TOKENIZER_CLASSES

    path = home().cache / TOKENIZER_CLASSES
    return json.loads(path.read_text()) if path.exists() else {}


def test_the_remembered_class_gives_autotokenizers_tokenizer(tiny_model, monkeypatch):
    import transformers

    from tunery.chat_template import prompt_ids, render
    from tunery.models.loading import load_tokenizer, tokenizer_dir

    first = load_tokenizer(tiny_model)
    memo = _memo()
    assert list(memo.values()) == [f"{type(first).__module__}:{type(first).__qualname__}"]
    assert next(iter(memo)).endswith(f"@{transformers.__version__}")

    def no_auto(*a, **kw):
        raise AssertionError("AutoTokenizer was asked again")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", no_auto)
    again = load_tokenizer(tiny_model)
    monkeypatch.undo()
    auto = transformers.AutoTokenizer.from_pretrained(tokenizer_dir(tiny_model))
    assert type(again) is type(auto)
    assert render(again, CHAT, generation_prompt=True) == render(auto, CHAT, generation_prompt=True)
    ids = prompt_ids(again, CHAT)
    assert ids == prompt_ids(auto, CHAT)
    assert again.decode(ids, skip_special_tokens=True) == auto.decode(ids, skip_special_tokens=True)
    assert (again.eos_token_id, again.pad_token_id) == (first.eos_token_id, first.pad_token_id)


def test_changed_files_or_a_memo_outside_transformers_ask_autotokenizer_again(tiny_model, tmp_path):
    import shutil

    from tunery.home import atomic_write_json, home
    from tunery.models import ModelRecord
    from tunery.models.loading import TOKENIZER_CLASSES, load_tokenizer, tokenizer_key

    load_tokenizer(tiny_model)
    key = next(iter(_memo()))
    # a memo naming anything but a transformers class is never imported, let alone called
    atomic_write_json(home().cache / TOKENIZER_CLASSES, {key: "subprocess:run"})
    tok = load_tokenizer(tiny_model)
    assert _memo()[key] == f"{type(tok).__module__}:{type(tok).__qualname__}"
    # a transformers class that is not a tokenizer is never called; nor is a failing one trusted
    atomic_write_json(home().cache / TOKENIZER_CLASSES, {key: "transformers:AutoModelForCausalLM"})
    assert type(load_tokenizer(tiny_model)) is type(tok)
    # a remembered tokenizer class that fails to load is a cache miss: AutoTokenizer chooses again
    atomic_write_json(home().cache / TOKENIZER_CLASSES, {key: "transformers:PreTrainedTokenizerBase"})
    assert type(load_tokenizer(tiny_model)) is type(tok)
    assert _memo()[key] == f"{type(tok).__module__}:{type(tok).__qualname__}"
    # other tokenizer files are other tokenizers: a key of their own
    copy = shutil.copytree(tiny_model.path, tmp_path / "copy")
    cfg = json.loads((copy / "tokenizer_config.json").read_text())
    (copy / "tokenizer_config.json").write_text(json.dumps({**cfg, "model_max_length": 77}))
    other = ModelRecord(id="copy", kind="base", path=copy, source="test")
    assert tokenizer_key(other) != tokenizer_key(tiny_model)
    assert load_tokenizer(other).model_max_length == 77 and len(_memo()) == 2
