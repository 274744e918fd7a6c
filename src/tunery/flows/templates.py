"""Jinja2 templates of llm and prompt nodes, and the chat-prompt convention of Prompt flow: a
rendered template is split into messages at lines such as ``# system:``, ``user:`` or
``# Assistant:`` (case-insensitive, ``#`` optional).

Role lines that arrive inside input values (a user pasting ``# system:`` into a question) are
escaped before rendering and restored afterwards, so data can never open a new message."""

from __future__ import annotations

import re
import threading
import traceback
import uuid
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import jinja2.sandbox

from tunery.chat import ChatMessage, Role
from tunery.data.text import read_text
from tunery.errors import InvalidInput
from tunery.flows.dag import Node, Problem

_ROLES = ("system", "user", "assistant", "function", "tool")
_ROLE_LINE = re.compile(r"^[ \t]*#?[ \t]*(" + "|".join(_ROLES) + r")[ \t]*:[ \t]*\r?\n",
                        re.IGNORECASE | re.MULTILINE)
# parameters that configure the model call rather than fill the template
MODEL_PARAMS = frozenset({
    "deployment_name", "model", "max_tokens", "temperature", "top_p", "stop", "seed", "n", "presence_penalty",
    "frequency_penalty", "logit_bias", "user", "response_format", "suffix", "echo", "best_of", "logprobs",
    "functions", "function_call", "tools", "tool_choice", "stream",
})

# sandboxed: a prompt is data anyone who can edit a flow writes, and plain Jinja lets a template
# reach Python's globals ({{ cycler.__init__.__globals__.os }}) and run code on the server
_env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, keep_trailing_newline=True, autoescape=False)
_cache: dict[tuple[str, float], jinja2.Template] = {}
_lock = threading.Lock()


def _load(path: Path) -> jinja2.Template:
    key = (str(path), path.stat().st_mtime)
    with _lock:
        tpl = _cache.get(key)
        if tpl is None:
            tpl = _env.from_string(read_text(path, param="flow"))
            _cache[key] = tpl
    return tpl


def check_template(path: Path, node: Node, where: str) -> list[Problem]:
    """Syntax errors (errors) and variables the node does not provide (warnings)."""
    try:
        # compiled to find its variables, which also finds an unknown filter or test
        variables = jinja2.meta.find_undeclared_variables(_env.parse(read_text(path, param="flow")))
    except InvalidInput as e:  # not UTF-8: a problem of the node, so the flow still opens to be fixed
        return [Problem(where, "source.path", str(e))]
    except jinja2.TemplateSyntaxError as e:  # and TemplateAssertionError: {{ x | nosuchfilter }}
        return [Problem(where, "source.path", template_error(e, node.source))]
    missing = sorted(variables - set(node.inputs))
    return [Problem(where, f"inputs.{name}", f"template {node.source} uses {{{{ {name} }}}} but the node has "
                    "no such input; it renders empty", severity="warning") for name in missing]


def template_error(e: Exception, source: str) -> str:
    """Why template ``source`` failed to compile or render, at its line: ``template t.jinja2 line 3:
    ZeroDivisionError: division by zero``."""
    if isinstance(e, jinja2.TemplateSyntaxError):
        line, message = e.lineno, e.message
    else:
        frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == "<template>"]
        if not frames:  # not raised by the template: not UTF-8 (its line named), or no role line (parse_chat)
            return f"template {source}: {e}"
        line = frames[-1].lineno
        message = "it calls itself without end" if isinstance(e, RecursionError) else str(e)
        if not isinstance(e, jinja2.TemplateError):
            message = f"{type(e).__name__}: {message}"
    return f"template {source}{f' line {line}' if line else ''}: {message}"


def render(path: Path, variables: dict[str, Any]) -> str:
    """Render a template file; errors raised by Jinja2 propagate (the caller names the node)."""
    return _load(path).render(**variables)


def render_chat(path: Path, variables: dict[str, Any]) -> list[ChatMessage]:
    """Render a chat template and split it into messages, with role lines in inputs escaped."""
    escapes: dict[str, str] = {}
    safe = {k: _escape(v, escapes) for k, v in variables.items()}
    messages = parse_chat(render(path, safe))
    if not escapes:
        return messages
    return [ChatMessage(m.role, _unescape(m.content, escapes)) for m in messages]


def parse_chat(text: str) -> list[ChatMessage]:
    """Split rendered text into messages. Raises ``ValueError`` when text precedes the first role
    line, or a role is not system/user/assistant."""
    parts = _ROLE_LINE.split(text)
    if parts[0].strip():
        raise ValueError("the rendered prompt must start with a role line such as '# system:' or '# user:' "
                         f"(it starts with {parts[0].strip()[:40]!r})")
    messages = []
    for role, content in zip(parts[1::2], parts[2::2], strict=True):
        role = role.lower()
        if role not in ("system", "user", "assistant"):
            raise ValueError(f"role {role!r} is not supported in chat prompts; use system, user or assistant")
        messages.append(ChatMessage(Role(role), content.strip()))
    if not messages:
        raise ValueError("the rendered prompt has no role lines such as '# system:' or '# user:'")
    return messages


def _escape(value: Any, escapes: dict[str, str]) -> Any:
    if isinstance(value, str):
        def sub(m: re.Match) -> str:
            token = f"role-{uuid.uuid4().hex}"
            escapes[token] = m.group(0)
            return token + "\n"
        return _ROLE_LINE.sub(sub, value)
    if isinstance(value, list):
        return [_escape(v, escapes) for v in value]
    if isinstance(value, dict):
        return {k: _escape(v, escapes) for k, v in value.items()}
    return value


def _unescape(text: str, escapes: dict[str, str]) -> str:
    for token, original in escapes.items():
        text = text.replace(token + "\n", original).replace(token, original.rstrip("\r\n"))
    return text
