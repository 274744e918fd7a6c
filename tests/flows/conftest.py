"""Helpers for flow tests: write a flow folder from inline text, and a scripted model factory."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tunery.serving import ScriptedChatModel


def write_files(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


@pytest.fixture
def make_flow(tmp_path: Path) -> Callable[..., Path]:
    """``make_flow(dag_yaml, **files)`` -> a flow folder (file names with dots given as dict)."""
    counter = iter(range(1000))

    def make(dag: str, files: dict[str, str] | None = None, name: str | None = None) -> Path:
        root = tmp_path / (name or f"flow{next(counter)}")
        return write_files(root, {"flow.dag.yaml": dag, **(files or {})})

    return make


@pytest.fixture
def fake() -> ScriptedChatModel:
    return ScriptedChatModel(replies=["fake answer"])


@pytest.fixture
def factory(fake: ScriptedChatModel):
    """A model factory that records (connection name, model name) and answers with ``fake``."""
    calls: list[tuple[str, str | None]] = []

    def build(connection, model):
        calls.append((connection.name, model))
        return fake

    build.calls = calls  # type: ignore[attr-defined]
    return build


QA_FLOW = """
inputs:
  question:
    type: string
  n:
    type: int
    default: 2
outputs:
  answer:
    type: string
    reference: ${post.output}
  shout:
    type: string
    reference: ${prep.output.q}
nodes:
- name: prep
  type: python
  source: {type: code, path: prep.py}
  inputs:
    question: ${inputs.question}
    n: ${inputs.n}
- name: answer
  type: llm
  source: {type: code, path: answer.jinja2}
  inputs:
    deployment_name: gpt-35-turbo
    max_tokens: 16
    temperature: 0.2
    question: ${prep.output.q}
  connection: open_ai_connection
  api: chat
- name: post
  type: python
  source: {type: code, path: post.py}
  inputs:
    text: ${answer.output}
"""

QA_FILES = {
    "prep.py": """
        import time

        from promptflow.core import tool


        @tool
        def prep(question: str, n: int) -> dict:
            if question == "boom":
                raise ValueError("cannot prepare boom")
            if question == "slow":
                time.sleep(3)
            print(f"preparing {question}")
            return {"q": question.upper(), "n": n}
    """,
    "answer.jinja2": """
        # system:
        Answer briefly.
        # user:
        {{question}}
    """,
    "post.py": """
        from promptflow import tool


        @tool()
        def post(text: str) -> str:
            return text.strip() + "!"
    """,
}


@pytest.fixture
def qa_flow(make_flow) -> Path:
    """python -> llm -> python, with ``.output.key`` references; question 'boom' fails in prep,
    'slow' sleeps 3 s in prep."""
    return make_flow(QA_FLOW, QA_FILES, name="qa")


@pytest.fixture
def write():
    """``write(folder, {name: text})``: write dedented files into a folder."""
    return write_files
