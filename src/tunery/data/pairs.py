"""One preference pair (DPO) in OpenAI's format, checked line by line:

    {"input": {"messages": [...], "tools": [...]?, "parallel_tool_calls": true?},
     "preferred_output": [{"role": "assistant", "content": "..."}],
     "non_preferred_output": [{"role": "assistant", "content": "..."}]}

The prompt follows the chat data's rules: the validator hands its own message and order checks to
:func:`check_pair` (so the rules live once, in ``data.validate``, which imports this module, not the
reverse), and its tools and tool calls are checked by :mod:`tunery.data.tools`, as a chat example's
are. The prompt ends with a user message, and each output is exactly one assistant message with
text: DPO trains on the answers' text (:class:`PreferencePair`), so an output that calls tools is
refused rather than trained on as an empty answer.
A line is taken for a pair by its keys (:func:`is_pair`): that is how ``tunery data validate``,
``scrub`` and the upload report tell the two formats apart; ``data.preference`` loads whole files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from tunery.chat import ChatMessage, Conversation, Role
from tunery.data.text import BOM
from tunery.data.tools import check_example_tools, check_tool_use

PAIR_KEYS = ("input", "preferred_output", "non_preferred_output")
INPUT_KEYS = ("messages", "tools", "parallel_tool_calls")
OUTPUTS = ("preferred_output", "non_preferred_output")

CHAT_IN_PAIRS = "a chat example, not a preference pair: a DPO file holds only pairs"

Add = Callable[[str | None, str], None]
CheckMessage = Callable[[Add, int, Any], "tuple[bool, str | None]"]
"""The validator's check of one chat message: ``(add, index, message) -> (ok, role)``."""
CheckOrder = Callable[[Add, "list[str | None]"], bool]
"""The validator's check of the messages' order: ``(add, roles) -> ok``."""


@dataclass(frozen=True)
class PreferencePair:
    """A prompt and two answers to it, the preferred one first."""

    prompt: Conversation
    chosen: str
    rejected: str

    def conversation(self, answer: str) -> Conversation:
        """The prompt and ``answer``; only the answer is trained on (earlier assistant turns of the
        prompt are context, weight 0)."""
        earlier = tuple(replace(m, weight=0) if m.role is Role.ASSISTANT else m for m in self.prompt.messages)
        return Conversation((*earlier, ChatMessage(Role.ASSISTANT, answer)), self.prompt.tools)


def is_pair(obj: Any) -> bool:
    """Whether a parsed line is meant as a preference pair (it carries one of the pair's keys and no
    chat ``messages``): the one test that picks the format, line by line."""
    return isinstance(obj, dict) and "messages" not in obj and any(k in obj for k in PAIR_KEYS)


def line_kind(raw: bytes) -> str | None:
    """``preference`` when a line (its bytes) is a preference pair (:func:`is_pair`), ``chat`` when it
    is another JSON object, and None when it is no JSON object at all (blank, broken, a list): such
    a line says nothing of the file's format."""
    try:
        obj = json.loads(raw.removeprefix(BOM))
    except (ValueError, RecursionError):
        return None
    return ("preference" if is_pair(obj) else "chat") if isinstance(obj, dict) else None


def _under(add, prefix: str, old: str = "messages"):
    """``add`` with the field renamed from the chat validator's ``messages[...]`` to where it sits
    in a pair (``input.messages[...]``, ``preferred_output[...]``)."""
    return lambda fld, message: add(prefix + (fld or "").removeprefix(old) if fld is not None else prefix, message)


def _kind(value: Any) -> str:
    return "null" if value is None else {dict: "an object", list: "a list", str: "a string"}.get(
        type(value), f"a {type(value).__name__}")


def check_pair(add: Add, warn: Add, obj: dict, check_message: CheckMessage,
               check_order: CheckOrder) -> PreferencePair | None:
    """Check one parsed line (see :func:`is_pair`), reporting every problem through ``add`` (errors)
    and ``warn`` (field, message), the messages with ``check_message`` and the prompt's order with
    ``check_order``; the pair when it is valid."""
    ok = True
    for key in obj:
        if key not in PAIR_KEYS:
            add(key, f"unknown key {json.dumps(key)}: a preference pair holds input, preferred_output and "
                     "non_preferred_output")
            ok = False
    prompt = _check_input(add, obj.get("input"), check_message, check_order) if "input" in obj else None
    if "input" not in obj:
        add("input", 'missing "input": {"messages": [...]} with the prompt')
    answers: list[str | None] = []
    for out in OUTPUTS:
        value = obj.get(out)
        if out not in obj:
            add(out, f'missing "{out}": a list of one assistant message')
        elif not isinstance(value, list) or len(value) != 1:
            add(out, f"{out} must be a list of exactly one assistant message, got "
                     + (f"{len(value)} messages" if isinstance(value, list) else _kind(value)))
        else:
            msg_ok, role = check_message(_under(add, out), 0, value[0])
            if role is not None and role != Role.ASSISTANT:
                add(f"{out}[0].role", f"the output must be an assistant message, not {role}")
                msg_ok = False
            elif role == Role.ASSISTANT and value[0].get("tool_calls"):
                add(f"{out}[0].tool_calls", "tool calls in a preference output are not supported: DPO trains on "
                                            "the answer's text; give each output as a text answer")
                msg_ok = False
            if msg_ok and role == Role.ASSISTANT:
                if value[0].get("weight") == 0:
                    add(f"{out}[0].weight", "an output cannot have weight 0: it is what the pair teaches")
                else:
                    answers.append(ChatMessage.from_dict(value[0]).content)
                    continue
        answers.append(None)
    if prompt is None or None in answers or not ok:
        return None
    if answers[0] == answers[1]:
        warn(None, "preferred and non-preferred outputs are the same: the pair teaches nothing")
    return PreferencePair(prompt, answers[0], answers[1])


def _check_input(add: Add, value: Any, check_message: CheckMessage, check_order: CheckOrder) -> Conversation | None:
    if not isinstance(value, dict):
        add("input", f'input must be an object like {{"messages": [...]}}, got {_kind(value)}')
        return None
    ok = True
    for key in value:
        if key not in INPUT_KEYS:
            add(f"input.{key}", f'unknown key {json.dumps(key)}: input holds "messages" and optionally "tools", '
                                '"parallel_tool_calls"')
            ok = False
    tools_ok, schemas, parallel = check_example_tools(_under(add, "input.", ""), value)
    ok = tools_ok and ok
    messages = value.get("messages")
    if not isinstance(messages, list) or not messages:
        add("input.messages", "missing or empty: the prompt needs at least one user message"
            if not messages else f"messages must be a list of messages, got {_kind(messages)}")
        return None
    in_messages = _under(add, "input.messages")
    roles = []
    for i, m in enumerate(messages):
        msg_ok, role = check_message(in_messages, i, m)
        ok = msg_ok and ok
        roles.append(role)
    ok = check_order(in_messages, roles) and ok
    if any(r == Role.TOOL for r in roles) or any(isinstance(m, dict) and "tool_calls" in m for m in messages):
        ok = check_tool_use(in_messages, messages, roles, schemas, parallel) and ok
    if roles[-1] is not None and roles[-1] != Role.USER:
        add(f"input.messages[{len(roles) - 1}].role", f"the prompt must end with a user message, not {roles[-1]}: "
                                                      "the outputs answer it")
        ok = False
    return Conversation.from_dicts(messages, value.get("tools") or None) if ok and None not in roles else None


def pair_messages(obj: dict) -> list[tuple[str, list]]:
    """The message lists of a parsed pair, each with the field it sits in."""
    prompt = obj.get("input")
    found = [("input.messages", prompt.get("messages") if isinstance(prompt, dict) else None),
             *((out, obj.get(out)) for out in OUTPUTS)]
    return [(fld, messages) for fld, messages in found if isinstance(messages, list)]
