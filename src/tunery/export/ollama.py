"""An Ollama ``Modelfile`` beside a GGUF export, so that ``ollama create NAME -f Modelfile`` gives
a chat model that talks like the one tunery served.

Ollama templates are Go templates, not Jinja. For ChatML models (SmolLM2 and the tiny test model)
we write the equivalent Go template, the stop token and the default system prompt that the Jinja
template inserts; for any other template we leave TEMPLATE out and Ollama falls back to the Jinja
template stored in the GGUF metadata (``tokenizer.chat_template``), which it matches against its
known templates."""

from __future__ import annotations

import re
from pathlib import Path

CHATML_GO_TEMPLATE = """{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{- range .Messages }}{{- if ne .Role "system" }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}{{- end }}<|im_start|>assistant
"""


def default_system(chat_template: str) -> str | None:
    """The system prompt a ChatML template inserts when the conversation has none."""
    m = re.search(r"<\|im_start\|>system(?:\\n|\n)(.*?)<\|im_end\|>", chat_template, re.S)
    return m.group(1) if m else None


def modelfile(gguf_name: str, chat_template: str | None, *, temperature: float | None = None) -> str:
    lines = [f"FROM ./{gguf_name}", ""]
    if chat_template and "<|im_start|>" in chat_template:
        lines += [f'TEMPLATE """{CHATML_GO_TEMPLATE}"""']
        system = default_system(chat_template)
        if system:
            lines += [f'SYSTEM """{system}"""']
        lines += ['PARAMETER stop "<|im_start|>"', 'PARAMETER stop "<|im_end|>"']
    else:
        lines += ["# TEMPLATE comes from the chat template in the GGUF metadata (tokenizer.chat_template)"]
    if temperature is not None:
        lines += [f"PARAMETER temperature {temperature}"]
    return "\n".join(lines) + "\n"


def write_modelfile(folder: Path, gguf_name: str, chat_template: str | None) -> Path:
    path = Path(folder) / "Modelfile"
    path.write_text(modelfile(gguf_name, chat_template))
    return path
