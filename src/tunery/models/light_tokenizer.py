"""A chat tokenizer that needs no ``transformers``: the model's ``tokenizer.json`` run by the Rust
``tokenizers`` library, and its chat template rendered with jinja2 the way transformers renders it.

Why this replaces a part of transformers: serving on the compiled fast path needs four things of a
tokenizer (render the chat template, encode, decode, the special tokens), and importing
transformers to get them cost about a second of a cold ``tunery ask`` (issue 16's goal is the
first token within 2 s of a cold process; the engine itself is ready in ~0.6 s). transformers'
fast tokenizer is itself a wrapper of the same ``tokenizers`` object, and its
``apply_chat_template`` compiles the template in a sandboxed jinja2 environment with a few globals
(``raise_exception``, ``strftime_now``, a ``tojson`` that does not escape HTML); this module
builds the same environment.

It is never trusted blindly. :func:`verify` compares a :class:`LightTokenizer` with transformers'
tokenizer for the same files (rendered text with and without a generation prompt and tools, ids,
decoded text of every added token and a spread of the vocabulary, the special tokens) and
``tunery.models.loading`` uses the light one for a set of tokenizer files only after it agreed
once, remembering the verdict in the home's cache. Anything else asked of it (padding, tensors,
``encode`` with special tokens, an attribute it lacks) is delegated to transformers' tokenizer,
loaded on first such use, so callers can treat it as a ``PreTrainedTokenizerFast``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
"""The named special tokens transformers passes to a chat template (``special_tokens_map``)."""

_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


def _token_text(value: Any) -> str | None:
    if isinstance(value, Mapping):  # {"content": "<|im_end|>", "special": true, ...}
        value = value.get("content")
    return value if isinstance(value, str) else None


@lru_cache(maxsize=32)
def _compiled(template: str) -> Any:
    """The template compiled as transformers compiles it (``_compile_jinja_template``)."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(jinja2.ext.Extension):
        # transformers' ``{% generation %}`` tag marks assistant text for its masks; when rendering
        # it only passes its body through
        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller: Callable[[], str]) -> str:
            return caller()

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
               sort_keys: bool = False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


def _plain(value: Any) -> Any:
    """Messages and tools as plain JSON values, keys whose value is None dropped from each message
    (as transformers does: templates handle a missing key better than ``None``)."""
    if callable(getattr(value, "model_dump", None)):
        value = value.model_dump()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _message(m: Any) -> dict[str, Any]:
    d = {k: v for k, v in _plain(m).items() if v is not None}
    reasoning = next((d[k] for k in _REASONING_FIELDS if d.get(k) is not None), None)
    if reasoning is not None:
        d = {"thinking": reasoning, **d, "reasoning_content": reasoning}
    return d


class LightTokenizer:
    """The part of a fast tokenizer that serving uses, from a tokenizer folder, without transformers.
    Build with :meth:`load` (``None`` when the folder is not of a kind it can take)."""

    is_fast = True

    def __init__(self, path: Path, backend: Any, config: Mapping[str, Any], chat_template: Any,
                 full: Callable[[], Any]) -> None:
        self.name_or_path = str(path)
        self._backend = backend
        self.chat_template = chat_template
        self._special = {k: t for k in SPECIAL_TOKENS if (t := _token_text(config.get(k))) is not None}
        self._full_loader = full
        self._full: Any = None
        self._full_lock = threading.Lock()

    @classmethod
    def load(cls, path: Path, full: Callable[[], Any]) -> LightTokenizer | None:
        """The tokenizer of the folder ``path``; ``full`` loads transformers' own tokenizer for what
        this one delegates. ``None`` for a folder without ``tokenizer.json`` and a chat template, or
        whose ``tokenizer_config.json`` adds tokens the ``tokenizer.json`` lacks."""
        path = Path(path)
        try:
            config = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
            from tokenizers import Tokenizer

            backend = Tokenizer.from_file(str(path / "tokenizer.json"))
        except Exception:  # noqa: BLE001 - unreadable files, bad JSON, or the tokenizers library's own error
            return None
        jinja = path / "chat_template.jinja"
        template = jinja.read_text(encoding="utf-8") if jinja.is_file() else config.get("chat_template")
        if not template:
            return None
        for i, added in (config.get("added_tokens_decoder") or {}).items():
            if backend.token_to_id(_token_text(added) or "") != int(i):
                return None
        backend.no_padding()
        backend.no_truncation()
        return cls(path, backend, config, template, full)

    # --- special tokens ---------------------------------------------------------------------------

    @property
    def special_tokens_map(self) -> dict[str, str]:
        return dict(self._special)

    def _id(self, name: str) -> int | None:
        text = self._special.get(name)
        return None if text is None else self._backend.token_to_id(text)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name.startswith("_"):
            raise AttributeError(name)
        if name in SPECIAL_TOKENS:
            return self._special.get(name)
        if name.endswith("_token_id") and name[:-3] in SPECIAL_TOKENS:
            return self._id(name[:-3])
        return getattr(self.full(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in SPECIAL_TOKENS:  # e.g. ``pad_token = eos_token``: on both tokenizers
            self._special[name] = value
            if self._full is not None:
                setattr(self._full, name, value)
            return
        object.__setattr__(self, name, value)

    def full(self) -> Any:
        """transformers' tokenizer for these files (loaded once, on first use), with the same
        special tokens set."""
        with self._full_lock:
            if self._full is None:
                tok = self._full_loader()
                for k, v in self._special.items():
                    if getattr(tok, k, None) != v:
                        setattr(tok, k, v)
                self._full = tok
            return self._full

    @property
    def backend_tokenizer(self) -> Any:
        return self._backend

    # --- the chat template -----------------------------------------------------------------------

    def get_chat_template(self, chat_template: str | None = None, tools: Any = None) -> str:
        template = self.chat_template
        if isinstance(template, list):  # [{"name": ..., "template": ...}] as saved by older versions
            template = {t["name"]: t["template"] for t in template}
        if isinstance(template, dict):
            if chat_template in template:
                return template[chat_template]
            if chat_template is None:
                if tools is not None and "tool_use" in template:
                    return template["tool_use"]
                if "default" in template:
                    return template["default"]
                raise ValueError(f"several chat templates and no default: {sorted(template)}")
        return chat_template or template

    def apply_chat_template(self, conversation: Any, tools: Sequence[Mapping[str, Any]] | None = None, *,
                            tokenize: bool = True, add_generation_prompt: bool = False,
                            chat_template: str | None = None, **kwargs: Any) -> Any:
        """transformers' ``apply_chat_template`` for ``tokenize=False``; anything else is delegated."""
        if tokenize or kwargs.keys() - {"documents"}:
            return self.full().apply_chat_template(conversation, tools=tools, tokenize=tokenize,
                                                   add_generation_prompt=add_generation_prompt,
                                                   chat_template=chat_template, **kwargs)
        if isinstance(conversation, list | tuple) and not conversation:
            raise ValueError("Cannot apply chat template to an empty conversation. Provide at least one message.")
        batched = isinstance(conversation, list | tuple) and (
            isinstance(conversation[0], list | tuple) or hasattr(conversation[0], "messages"))
        chats = conversation if batched else [conversation]
        compiled = _compiled(self.get_chat_template(chat_template, tools))
        context = {**self._special, "tools": _plain(list(tools)) if tools is not None else None,
                   "documents": _plain(kwargs.get("documents")), "add_generation_prompt": add_generation_prompt}
        out = []
        for chat in chats:
            messages = [_message(m) for m in getattr(chat, "messages", chat)]
            out.append(compiled.render(messages=messages, **context))
        return out if batched else out[0]

    # --- encode and decode -----------------------------------------------------------------------

    def __call__(self, text: str | Sequence[str], *, add_special_tokens: bool = True,
                 return_offsets_mapping: bool = False, **kwargs: Any) -> dict[str, Any]:
        """Token ids of ``text`` (a string or a list of them) with ``add_special_tokens=False``, as
        the fast tokenizer returns them; other options are delegated."""
        if add_special_tokens or kwargs:
            return self.full()(text, add_special_tokens=add_special_tokens,
                               return_offsets_mapping=return_offsets_mapping, **kwargs)
        single = isinstance(text, str)
        encs = self._backend.encode_batch(list([text] if single else text), add_special_tokens=False)
        out: dict[str, Any] = {"input_ids": [e.ids for e in encs], "attention_mask": [e.attention_mask for e in encs]}
        if return_offsets_mapping:
            out["offset_mapping"] = [e.offsets for e in encs]
        return {k: v[0] for k, v in out.items()} if single else out

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool | None = False, **kwargs: Any) -> str:
        if clean_up_tokenization_spaces or kwargs:
            return self.full().decode(ids, skip_special_tokens=skip_special_tokens,
                                      clean_up_tokenization_spaces=clean_up_tokenization_spaces, **kwargs)
        return self._backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> Any:
        if isinstance(ids, int):
            return self._backend.id_to_token(ids)
        return [self._backend.id_to_token(i) for i in ids]

    def __len__(self) -> int:
        return self._backend.get_vocab_size(with_added_tokens=True)

    def __repr__(self) -> str:
        return f"LightTokenizer({self.name_or_path!r})"


# --- agreeing with transformers ------------------------------------------------------------------

_PROBE_TEXT = ("Ünïcödé café, 東京 and 🚀!  Two  spaces,\ttabs\n\nand lines; "
               "\"quotes\" <b>html</b> & 3.14 -- don't 1,000,000")
_PROBE_TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather <now> & later",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def _probe_chats(special: Sequence[str]) -> list[list[dict[str, Any]]]:
    marked = " ".join(special)
    return [
        [{"role": "user", "content": "Hi"}],
        [{"role": "system", "content": "You are terse."}, {"role": "user", "content": _PROBE_TEXT}],
        [{"role": "system", "content": "s"}, {"role": "user", "content": f"literal {marked} tokens"},
         {"role": "assistant", "content": " leading space and trailing \n"}, {"role": "user", "content": "again?"}],
    ]


def verify(light: LightTokenizer, full: Any) -> str | None:
    """``None`` when ``light`` renders, encodes and decodes as transformers' ``full`` tokenizer does
    on a probe (see the module's docstring); otherwise the first difference, in words."""
    if light.special_tokens_map != dict(full.special_tokens_map):
        return f"special tokens differ: {light.special_tokens_map} vs {full.special_tokens_map}"
    for name in ("eos_token_id", "pad_token_id", "bos_token_id"):
        if getattr(light, name) != getattr(full, name):
            return f"{name} differs: {getattr(light, name)} vs {getattr(full, name)}"
    added = sorted(full.added_tokens_decoder)
    chats = _probe_chats([full.added_tokens_decoder[i].content for i in added[:8]])
    tool_sets: list[Any] = [None]
    template = str(light.chat_template)
    if "tools" in template:
        tool_sets.append(_PROBE_TOOLS)
    texts: list[str] = []
    for tools in tool_sets:
        for gen in (False, True):
            try:
                want = full.apply_chat_template(chats, tools=tools, tokenize=False, add_generation_prompt=gen)
            except Exception:  # noqa: BLE001 - a template that refuses the probe: both must refuse it
                want = None
            try:
                got = light.apply_chat_template(chats, tools=tools, tokenize=False, add_generation_prompt=gen)
            except Exception:  # noqa: BLE001
                got = None
            if got != want:
                return f"the chat template renders differently (tools={tools is not None}, generation prompt={gen})"
            texts += want or []
    texts += [_PROBE_TEXT, " " + _PROBE_TEXT, ""]
    ids = light(texts, add_special_tokens=False)
    if ids["input_ids"] != full(texts, add_special_tokens=False)["input_ids"]:
        return "token ids differ"
    vocab = len(full)
    sample = sorted({*range(0, vocab, max(1, vocab // 2000)), *added, vocab - 1})
    seqs = [*ids["input_ids"], sample, *([i] for i in sample)]
    for skip in (True, False):
        for seq in seqs:
            if light.decode(seq, skip_special_tokens=skip) != full.decode(seq, skip_special_tokens=skip,
                                                                          clean_up_tokenization_spaces=False):
                return f"decoding {seq[:8]}... differs (skip_special_tokens={skip})"
    return None
