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


def test_a_value_the_edit_did_not_touch_comes_back_byte_identical():
    """ruamel would fold a long value at its own width, and fold anew one the file folded: a value
    that was not edited keeps its lines, the one beside it edited or not."""
    long = "a long default " * 9
    text = (f'inputs:\n  q:\n    type: string\n    default: "{long}"\n  p:\n    type: string\n'
            f"    default: '{long}'\n  r:\n    type: string\n    default: {long.strip()}\n"
            "  folded:\n    type: string\n    default: \"The city council voted on Tuesday to extend the night bus\n"
            "      service to the airport, a change travellers had asked for since the new terminal opened.\"\n"
            "outputs:\n  answer:\n    type: string\n    reference: ${inputs.q}\nnodes: []\n")
    dag = yaml.safe_load(text)
    dag["inputs"]["folded"]["description"] = "a new key beside the folded value"
    dag["inputs"]["r"]["type"] = "string"
    dag["outputs"]["answer"]["type"] = "object"
    out = flow_text(text, dag)
    assert yaml.safe_load(out) == dag
    assert out == text.replace("  answer:\n    type: string", "  answer:\n    type: object").replace(
        "opened.\"\n", "opened.\"\n    description: a new key beside the folded value\n")


@pytest.mark.parametrize("name", ["web-classification", "summarization", "classification-accuracy-eval"])
def test_an_edit_of_a_gallery_flow_changes_only_its_own_line(name):
    from tunery.examples import FLOWS

    text = (FLOWS / name / "flow.dag.yaml").read_text(encoding="utf-8")
    assert flow_text(text, yaml.safe_load(text)) == text
    dag = yaml.safe_load(text)
    first = next(iter(dag["inputs"]))
    dag["inputs"][first]["type"] = "object"  # beside a long folded default in two of them
    out = flow_text(text, dag)
    changed = [(a, b) for a, b in zip(text.splitlines(), out.splitlines(), strict=True) if a != b]
    assert changed == [("    type: string", "    type: object")], changed


NODES = """\
nodes:
  # a reads the question
  - name: a
    type: python
    inputs:
      x: |
        # system: not a comment of the file
        text
      # a's last words

  # b calls the model
  - name: b  # b's own
    type: llm
    inputs:
      y: ${a.output}
  # c cleans up
  - name: c
    type: python
# the variants follow
node_variants: {}
"""
A = ("  # a reads the question\n  - name: a\n    type: python\n    inputs:\n      x: |\n"
     "        # system: not a comment of the file\n        text\n      # a's last words\n")
B = "  # b calls the model\n  - name: b  # b's own\n    type: llm\n    inputs:\n      y: ${a.output}\n"
C = "  # c cleans up\n  - name: c\n    type: python\n"
END = "# the variants follow\nnode_variants: {}\n"


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda nodes: nodes.pop(1), "nodes:\n" + A + "\n" + C + END),
    (lambda nodes: nodes.pop(0), "nodes:\n" + B + C + END),
    (lambda nodes: nodes.pop(2), "nodes:\n" + A + "\n" + B + END),
    (lambda nodes: nodes.insert(2, {"name": "new", "type": "python"}),
     "nodes:\n" + A + "\n" + B + "  - name: new\n    type: python\n" + C + END),
    (lambda nodes: nodes.append(nodes.pop(0)), "nodes:\n" + B + C + A + END),
    (lambda nodes: nodes[0].pop("inputs"), "nodes:\n" + A[:A.index("    inputs")] + "\n" + B + C + END),
], ids=["middle", "first", "last", "added", "moved", "a-key"])
def test_a_node_deleted_added_or_moved_takes_its_own_comments_only(edit, expected):
    """ruamel keeps the comment above a node in the node before it: deleting that one would drop
    the comment, and deleting a node by position would leave its comment on its neighbour."""
    dag = yaml.safe_load(NODES)
    edit(dag["nodes"])
    out = flow_text(NODES, dag)
    assert yaml.safe_load(out) == dag
    assert out == expected, out


@pytest.mark.parametrize(("key", "lines"), [("$schema", 1), ("environment", 2)])
def test_deleting_a_key_by_the_description_leaves_the_description(key, lines):
    """The comment that leads the file is the flow's description: ruamel keeps it in ``$schema``
    and would drop it with that key; a key's own lines go, the description never does."""
    from tunery.examples import FLOWS

    text = (FLOWS / "web-classification" / "flow.dag.yaml").read_text(encoding="utf-8")
    dag = yaml.safe_load(text)
    del dag[key]
    start = text.index(key)
    end = start + len("".join(text[start:].splitlines(keepends=True)[:lines]))
    assert flow_text(text, dag) == text[:start] + text[end:]
