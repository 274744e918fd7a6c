"""A chat tokenizer that needs no ``transformers``: a snapshot of transformers' own tokenizer (its
Rust ``tokenizers`` object serialised, its chat templates, its special tokens), the chat template
rendered with jinja2 the way transformers renders it.

Why this replaces a part of transformers: serving on the compiled fast path needs four things of a
tokenizer (render the chat template, encode, decode, the special tokens), and importing
transformers to get them cost about a second of a cold ``tunery ask`` (issue 16's goal is the
first token within 2 s of a cold process; the engine itself is ready in ~0.6 s). transformers'
fast tokenizer is itself a wrapper of the same ``tokenizers`` object, and its
``apply_chat_template`` compiles the template in a sandboxed jinja2 environment with a few globals
(``raise_exception``, ``strftime_now``, a ``tojson`` that does not escape HTML); this module
builds the same environment.

It is never trusted blindly, nor rebuilt from the files by rules of its own. The first time a set of
tokenizer files is loaded for serving, transformers loads them as usual and :func:`snapshot` keeps
what that tokenizer ended up as: its Rust tokenizer serialised (with the added tokens and
pre-tokenizer settings its class applied), its chat template or templates, its special tokens (some
classes add one no file names). :func:`verify` then compares a :class:`LightTokenizer` made from
the snapshot with transformers' tokenizer (rendered text with and without a generation prompt and
tools, ids, decoded text of every added token and a spread of the vocabulary, the special tokens),
and ``tunery.models.loading`` keeps the snapshot only when they agreed. Anything else asked of it
(padding, tensors, ``encode`` with special tokens, an option of ``apply_chat_template`` it does not
take, an attribute it lacks) is handed to transformers' tokenizer, loaded on first such use, so
callers can treat it as a ``PreTrainedTokenizerFast``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
"""The named special tokens transformers passes to a chat template (``special_tokens_map``)."""

_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


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

    class TemplateDict:  # ``dict(...)`` without the class itself (no attribute walks out of the sandbox)
        def __call__(self, *args: Any, **kwargs: Any) -> dict:
            return dict(*args, **kwargs)

        def fromkeys(self, *args: Any, **kwargs: Any) -> dict:
            return dict.fromkeys(*args, **kwargs)

    class TemplateNamespace(jinja2.utils.Namespace):  # no underscore names stored on a namespace
        def __init__(*args: Any, **kwargs: Any) -> None:
            self, args = args[0], args[1:]
            attrs = dict(*args, **kwargs)
            for name in attrs:
                TemplateNamespace._check(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name: str, value: Any) -> None:
            TemplateNamespace._check(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def _check(name: Any) -> None:
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(
                    f"chat templates cannot store underscore-prefixed attributes on a namespace ({name!r})")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.globals["dict"] = TemplateDict()
    env.globals["namespace"] = TemplateNamespace
    return env.from_string(template)


def _plain(value: Any) -> Any:
    """What a template may see, rebuilt of plain JSON types as transformers rebuilds it (a template
    is code from a downloaded model): any other object becomes an inert ``<TypeName>``."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if callable(getattr(value, "model_dump", None)):
        return _plain(value.model_dump())
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return f"<{type(value).__name__}>"


def _message(m: Any) -> dict[str, Any]:
    """One message as transformers gives it to a template: keys whose value is None dropped
    (templates handle a missing key better than ``None``), reasoning under all its names."""
    d = _plain(m.to_dict() if callable(getattr(m, "to_dict", None)) else m)
    if not isinstance(d, dict):
        raise TypeError(f"Chat messages should be dicts, dataclasses or pydantic models, but got {m!r}.")
    d = {k: v for k, v in d.items() if v is not None}
    reasoning = next((d[k] for k in _REASONING_FIELDS if d.get(k) is not None), None)
    if reasoning is not None:
        d = {"thinking": reasoning, **d, "reasoning_content": reasoning}
    return d


SNAPSHOT_VERSION = 2
"""Bumped whenever what :func:`snapshot` keeps, or how :class:`LightTokenizer` uses it, changes:
part of the verdict's key in ``tunery.models.loading``, so an older verdict is never trusted."""


def snapshot(full: Any) -> dict[str, Any] | None:
    """What a :class:`LightTokenizer` needs of transformers' tokenizer ``full``, as JSON values;
    ``None`` when it is not a fast tokenizer with a chat template."""
    backend = getattr(full, "backend_tokenizer", None)
    template = getattr(full, "chat_template", None)
    if backend is None or not template:
        return None
    clean = getattr(full, "clean_up_tokenization_spaces", False)
    return {"version": SNAPSHOT_VERSION, "name_or_path": str(getattr(full, "name_or_path", "")),
            "backend": backend.to_str(), "chat_template": template,
            "special": {k: str(v) for k, v in dict(full.special_tokens_map).items() if v is not None},
            "encode_special_tokens": bool(getattr(backend, "encode_special_tokens", False)),
            "clean_up_tokenization_spaces": bool(clean)}


class LightTokenizer:
    """The part of a fast tokenizer that serving uses, without transformers: made from a
    :func:`snapshot` of transformers' tokenizer for the same files (:meth:`from_snapshot`)."""

    is_fast = True

    def __init__(self, state: Mapping[str, Any], backend: Any, full: Callable[[], Any]) -> None:
        self.name_or_path = state.get("name_or_path", "")
        self._backend = backend
        self.chat_template = state["chat_template"]
        self._special = dict(state["special"])
        self._clean_up = bool(state.get("clean_up_tokenization_spaces"))
        self._full_loader = full
        self._full: Any = None
        self._full_lock = threading.Lock()

    @classmethod
    def from_snapshot(cls, state: Mapping[str, Any], full: Callable[[], Any]) -> LightTokenizer | None:
        """The light tokenizer of a :func:`snapshot` (its ``backend`` may instead be a file named by
        ``backend_file``); ``full`` loads transformers' own tokenizer for what this one hands on.
        ``None`` for a snapshot of another version or one that does not load."""
        if not isinstance(state, Mapping) or state.get("version") != SNAPSHOT_VERSION:
            return None
        try:
            from tokenizers import Tokenizer

            # the serialised tokenizer inline, or in a file of its own (read without Python's JSON parser)
            backend = Tokenizer.from_str(state["backend"]) if "backend" in state \
                else Tokenizer.from_file(str(state["backend_file"]))
            backend.encode_special_tokens = bool(state.get("encode_special_tokens"))
            if not state["chat_template"] or not isinstance(state["special"], Mapping):
                return None
        except Exception:  # noqa: BLE001 - a damaged snapshot: transformers loads the files instead
            return None
        backend.no_padding()
        backend.no_truncation()
        return cls(state, backend, full)

    # --- special tokens ---------------------------------------------------------------------------

    @property
    def special_tokens_map(self) -> dict[str, str]:
        return dict(self._special)

    def _id(self, name: str) -> int | None:
        text = self._special.get(name)
        return None if text is None else self._backend.token_to_id(text)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # private names and dunders (copy, pickle) are never delegated
            raise AttributeError(name)
        if name in SPECIAL_TOKENS:
            return self._special.get(name)
        if name.endswith("_token_id") and name[:-3] in SPECIAL_TOKENS:
            return self._id(name[:-3])
        return getattr(self.full(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in SPECIAL_TOKENS:  # e.g. ``pad_token = eos_token``: on both tokenizers
            if value is None:
                self._special.pop(name, None)
            else:
                self._special[name] = str(value)
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

    def decode(self, ids: int | Sequence[int], skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool | None = None, **kwargs: Any) -> str:
        clean = self._clean_up if clean_up_tokenization_spaces is None else clean_up_tokenization_spaces
        if clean or kwargs:  # transformers' own clean-up rules
            return self.full().decode(ids, skip_special_tokens=skip_special_tokens,
                                      clean_up_tokenization_spaces=clean, **kwargs)
        return self._backend.decode([ids] if isinstance(ids, int) else list(ids),
                                    skip_special_tokens=skip_special_tokens)

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
    if light.chat_template != full.chat_template:
        return "the chat templates differ"
    if light.special_tokens_map != dict(full.special_tokens_map):
        return f"special tokens differ: {light.special_tokens_map} vs {full.special_tokens_map}"
    for name in ("eos_token_id", "pad_token_id", "bos_token_id"):
        if getattr(light, name) != getattr(full, name):
            return f"{name} differs: {getattr(light, name)} vs {getattr(full, name)}"
    added = sorted(full.added_tokens_decoder)
    marked = [full.added_tokens_decoder[i].content for i in added]
    chats = _probe_chats(marked[:8])
    texts: list[str] = []
    for tools in (None, _PROBE_TOOLS):
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
    texts += [_PROBE_TEXT, " " + _PROBE_TEXT, "", *(f"a {t} b  {t}\n{t}x " for t in marked)]
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
