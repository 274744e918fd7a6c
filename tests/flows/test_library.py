"""The studio's edits of a flow (a node edited, a variant cloned, the default variant set) write
``flow.dag.yaml`` over itself: its comments, the leading one that is the flow's description among
them, and its layout stay, in a user's own folder opened in place."""

from __future__ import annotations

import pytest
import yaml

from tunery.flows import set_default_variant
from tunery.flows.library import clone_variant, open_folder, save_flow, summary
from tunery.flows.spec import flow_text

DAG = """\
# Answer a question about a city.
# Kept short on purpose.
inputs:
  question:  # what the user asks
    type: string
    default: "Where is it?"
outputs:
  answer:
    type: string
    reference: ${answer.output}
nodes:
  # the one model call
  - name: answer
    type: llm
    source:
      type: code
      path: answer.jinja2
    inputs:
      question: ${inputs.question}
    connection: local
    api: chat
"""
PROMPT = "# user:\n{{question}}\n"
COMMENTS = ["# Answer a question about a city.", "# Kept short on purpose.", "# what the user asks",
            "# the one model call"]


@pytest.fixture(params=["\n", "\r\n"], ids=["lf", "crlf"])
def flow(request, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "flow.dag.yaml").write_bytes(DAG.replace("\n", request.param).encode())
    (folder / "answer.jinja2").write_text(PROMPT)
    return open_folder(folder), request.param


def _text(entry) -> str:
    return (entry.dir / "flow.dag.yaml").read_bytes().decode()


def _check(entry, eol: str) -> dict:
    text = _text(entry)
    for comment in COMMENTS:
        assert comment in text, text
    assert "\r\n" in text if eol == "\r\n" else "\r" not in text
    assert '"Where is it?"' in text and "\n  - name: answer" in text  # quoting and indentation kept
    assert summary(entry)["description"] == "Answer a question about a city. Kept short on purpose."
    return yaml.safe_load(text)


def test_every_studio_edit_keeps_the_comments_and_the_description(flow):
    entry, eol = flow
    dag = yaml.safe_load(_text(entry))
    dag["nodes"][0]["inputs"]["question"] = "${inputs.question}?"  # a node edited in the studio
    save_flow(entry, dag=dag)
    assert _check(entry, eol)["nodes"][0]["inputs"]["question"] == "${inputs.question}?"
    assert "answer" not in _check(entry, eol).get("node_variants", {})

    assert clone_variant(entry, "answer") == "variant_1"  # the node gets variants
    nv = _check(entry, eol)["node_variants"]["answer"]
    assert nv["default_variant_id"] == "variant_0" and set(nv["variants"]) == {"variant_0", "variant_1"}
    assert clone_variant(entry, "answer", "variant_1") == "variant_2"
    assert set(_check(entry, eol)["node_variants"]["answer"]["variants"]) == {"variant_0", "variant_1", "variant_2"}

    set_default_variant(entry.dir, "answer", "variant_2")
    assert _check(entry, eol)["node_variants"]["answer"]["default_variant_id"] == "variant_2"


def test_a_layout_the_line_edit_cannot_read_keeps_its_comments_too(tmp_path):
    """set_default_variant edits one line; a flow-style node_variants goes through flow_text."""
    text = DAG.replace("nodes:\n  # the one model call\n  - name: answer\n    type: llm\n    source:\n"
                       "      type: code\n      path: answer.jinja2\n    inputs:\n"
                       "      question: ${inputs.question}\n    connection: local\n    api: chat\n",
                       "nodes:\n  # the one model call\n  - name: answer\n    use_variants: true\n"
                       "node_variants: {answer: {default_variant_id: a, variants: {"
                       "a: {node: {type: llm, source: {type: code, path: answer.jinja2}, "
                       "inputs: {question: '${inputs.question}'}, connection: local, api: chat}}, "
                       "b: {node: {type: llm, source: {type: code, path: answer.jinja2}, "
                       "inputs: {question: '${inputs.question}'}, connection: local, api: chat}}}}}\n")
    (tmp_path / "flow.dag.yaml").write_text(text)
    (tmp_path / "answer.jinja2").write_text(PROMPT)
    set_default_variant(tmp_path, "answer", "b")
    written = (tmp_path / "flow.dag.yaml").read_text()
    assert all(c in written for c in COMMENTS)
    assert yaml.safe_load(written)["node_variants"]["answer"]["default_variant_id"] == "b"


def test_flow_text_changes_only_what_changed():
    dag = yaml.safe_load(DAG)
    assert flow_text(DAG, dag) == DAG
    dag["outputs"]["answer"]["type"] = "object"
    assert flow_text(DAG, dag) == DAG.replace("  answer:\n    type: string", "  answer:\n    type: object")
    assert yaml.safe_load(flow_text("not: [yaml", dag)) == dag  # a broken file is replaced by plain yaml
