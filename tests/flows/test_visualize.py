"""Comparing runs: the JSON-able comparison data and the self-contained HTML page."""

from __future__ import annotations

import json
import re

import pytest

from tunery.errors import NotFound
from tunery.flows import RunSpec, compare_runs, create_run, render_html, visualize
from tunery.serving import ScriptedChatModel

FLOW = """
inputs: {q: {type: string}}
outputs: {a: {reference: "${ask.output}"}}
nodes:
- name: ask
  use_variants: true
node_variants:
  ask:
    default_variant_id: variant_0
    variants:
      variant_0:
        node: {type: llm, source: {type: code, path: v0.jinja2}, inputs: {q: "${inputs.q}"}}
      variant_1:
        node: {type: llm, source: {type: code, path: v1.jinja2}, inputs: {q: "${inputs.q}"}}
"""
FILES = {"v0.jinja2": "# user:\n{{q}}\n", "v1.jinja2": "# system:\nshout\n# user:\n{{q}}\n"}
EVAL = """
inputs: {truth: {type: string}, pred: {type: string}}
outputs: {grade: {reference: "${grade.output}"}}
nodes:
- name: grade
  type: python
  source: {type: code, path: grade.py}
  inputs: {truth: "${inputs.truth}", pred: "${inputs.pred}"}
- name: acc
  type: python
  source: {type: code, path: acc.py}
  inputs: {grades: "${grade.output}"}
  aggregation: true
"""
EVAL_FILES = {
    "grade.py": "from promptflow.core import tool\n@tool\ndef grade(truth, pred):\n"
                "    return 'Correct' if truth == pred else 'Incorrect'\n",
    "acc.py": "from promptflow.core import tool, log_metric\n@tool\ndef acc(grades):\n"
              "    log_metric('accuracy', grades.count('Correct') / len(grades))\n",
}


def model(messages):
    text = messages[-1].content
    return text.upper() if messages[0].content == "shout" else text


@pytest.fixture
def runs(make_flow, tmp_path):
    flow = make_flow(FLOW, FILES, name="ask")
    ev = make_flow(EVAL, EVAL_FILES, name="grade")
    data = tmp_path / "d.jsonl"
    data.write_text('{"q": "a", "truth": "a"}\n{"q": "B", "truth": "B"}\n{"q": "<c>", "truth": "<c>"}\n')
    fake = ScriptedChatModel(reply=model)
    for name, variant in (("r0", None), ("r1", "${ask.variant_1}")):
        create_run(RunSpec(flow=str(flow), data=str(data), name=name, variant=variant), model_factory=lambda c, m: fake)
        create_run(RunSpec(flow=str(ev), data=str(data), run=name, name=f"e{name}",
                           column_mapping={"truth": "${data.truth}", "pred": "${run.outputs.a}"}))
    return ["r0", "r1"]


def test_compare_runs_data(runs):
    data = compare_runs(runs)
    json.dumps(data)  # JSON-able, for the studio
    assert [r["name"] for r in data["runs"]] == ["r0", "r1"]
    assert data["runs"][1]["variants"] == {"ask": "variant_1"} and data["runs"][1]["variant"] == "${ask.variant_1}"
    assert [e["name"] for e in data["runs"][0]["evaluations"]] == ["er0"]
    (acc,) = data["metrics"]
    assert acc["name"] == "accuracy" and acc["differs"] and acc["best"] == 1.0
    assert acc["values"] == {"r0": 1.0, "r1": pytest.approx(1 / 3)}
    lines = data["lines"]
    assert [ln["line_number"] for ln in lines] == [0, 1, 2]
    assert lines[0]["runs"]["r0"]["outputs"] == {"a": "a"} and lines[0]["runs"]["r1"]["outputs"] == {"a": "A"}
    assert lines[0]["runs"]["r0"]["grades"] == {"grade": "Correct"}
    assert lines[0]["runs"]["r1"]["grades"] == {"grade": "Incorrect"}
    assert [ln["outputs_differ"] for ln in lines] == [True, False, True]
    assert lines[1]["grades_differ"] is False and data["output_names"] == ["a"] and data["grade_names"] == ["grade"]


def test_html_page_is_self_contained_and_highlights_differences(runs, tmp_path):
    page = render_html(compare_runs(runs))
    assert "<script src" not in page and "<link" not in page and "@import" not in page
    assert not re.search(r"""(src|href)=["']?https?:""", page)
    assert page.count("<tr class='line diff'>") == 2 and page.count("<tr class='line'>") == 1
    assert "&lt;c&gt;" in page and "<c>" not in page  # values are escaped
    assert "class='best'>1</td>" in page and "g-Correct" in page
    path = visualize(runs, tmp_path / "cmp.html", open_browser=False)
    written = path.read_text()
    assert written.startswith("<!doctype html>") and "er0" in written and written.count("<tr class='line") == 3


def test_unknown_run(runs):
    with pytest.raises(NotFound, match="no run named 'nope'"):
        compare_runs(["r0", "nope"])
