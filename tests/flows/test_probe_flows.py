"""Prompt flow projects as users bring them: behaviours of Prompt flow's executor and schema that
tunery must match (bypassed dependencies, ...)."""

from __future__ import annotations

from click.testing import CliRunner

from tunery.cli.main import cli
from tunery.flows import test_flow

BYPASS_FLOW = """
inputs:
  flag: {type: bool, default: false}
outputs:
  a: {reference: "${a.output}"}
  b: {reference: "${b.output}"}
  c: {reference: "${c.output}"}
  d: {reference: "${d.output}"}
nodes:
- name: a
  type: python
  source: {type: code, path: a.py}
  inputs: {x: "${inputs.flag}"}
  activate: {when: "${inputs.flag}", is: true}
- name: b
  type: python
  source: {type: code, path: upper.py}
  inputs: {text: "${a.output}"}
- name: c
  type: python
  source: {type: code, path: upper.py}
  inputs: {text: "${a.output}"}
  activate: {when: "${inputs.flag}", is: false}
- name: d
  type: python
  source: {type: code, path: pair.py}
  inputs: {first: "${a.output}", second: "${a.output}", third: "${c.output}"}
"""
BYPASS_FILES = {
    "a.py": "from promptflow import tool\n@tool\ndef a(x: bool) -> str:\n    return 'from a'\n",
    "upper.py": "from promptflow import tool\n@tool\ndef upper(text: str = 'fallback') -> str:\n"
                "    return text.upper()\n",
    "pair.py": "from promptflow import tool\n@tool\ndef pair(first, third, second='dflt'):\n"
               "    return [first, second, third]\n",
}


def test_a_bypassed_dependency_gives_the_parameter_default_and_activate_alone_decides(make_flow, factory):
    # Prompt flow: a node with `activate` runs when its condition holds, even if every node it reads
    # was bypassed; an input from a bypassed node is left out when the function has a default for it
    root = make_flow(BYPASS_FLOW, BYPASS_FILES)
    line = test_flow(root, {}, model_factory=factory).line
    assert line.status == "Completed", line.error
    assert {n: r.status for n, r in line.nodes.items()} == {
        "a": "Bypassed", "b": "Bypassed", "c": "Completed", "d": "Completed"}
    assert line.outputs == {"a": None, "b": None, "c": "FALLBACK", "d": [None, "dflt", "FALLBACK"]}


def test_cli_prints_square_brackets_in_flow_data_as_text(make_flow, monkeypatch):
    # "[/b]" or "[red]" in an output, a print() or an error is the flow's text, not rich markup:
    # rich would drop it or fail the command with a MarkupError
    monkeypatch.setenv("COLUMNS", "250")
    root = make_flow("""
        inputs: {text: {type: string, default: "[/b] and [red]x"}}
        outputs: {out: {reference: "${echo.output}"}}
        nodes:
        - name: echo
          type: python
          source: {type: code, path: echo.py}
          inputs: {text: "${inputs.text}"}
    """, {"echo.py": "from promptflow import tool\n@tool\ndef echo(text):\n    print('[/x] printed')\n"
                     "    if text == 'fail':\n        raise ValueError('[/y] bad')\n    return text\n"})
    res = CliRunner().invoke(cli, ["flow", "test", "--flow", str(root)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "│ [/b] and [red]x" in res.output and "[/x] printed" in res.output
    assert 'outputs: {"out": "[/b] and [red]x"}' in res.output
    res = CliRunner().invoke(cli, ["flow", "test", "--flow", str(root), "--inputs", "text=fail"],
                             catch_exceptions=False)
    assert res.exit_code == 1 and "ValueError: [/y] bad" in res.output


LITERAL_FLOW = """
inputs: {q: {type: string, default: hi}}
outputs: {o: {reference: "${t.output}"}}
nodes:
- name: t
  type: python
  source: {type: code, path: t.py}
  inputs:
    q: ${inputs.q}
    n: "5"
    ratio: "0.5"
    flag: "false"
    items: "[1, 2]"
    opts: '{"a": 1}'
    loose: "7"
    top_k: ""
    extra:
"""
LITERAL_CODE = """
from typing import Optional

from promptflow.core import tool


@tool
def t(q: str, n: int, ratio: float, flag: bool, items: list, opts: dict, loose, top_k: Optional[int] = 3,
      extra: str = "dflt"):
    return [q, n, ratio, flag, items, opts, loose, top_k, extra]
"""


def test_python_node_literals_take_the_type_of_their_parameter(make_flow, factory):
    # Prompt flow converts a python node's literal inputs to the tool's parameter types, and leaves
    # an empty one out so the parameter's default applies: "false" must not arrive as a true string
    root = make_flow(LITERAL_FLOW, {"t.py": LITERAL_CODE})
    line = test_flow(root, {}, model_factory=factory).line
    assert line.status == "Completed", line.error
    assert line.outputs["o"] == ["hi", 5, 0.5, False, [1, 2], {"a": 1}, 7, 3, "dflt"]


def test_a_python_literal_that_does_not_convert_names_the_node_input(make_flow):
    from tunery.flows import validate_flow

    root = make_flow(LITERAL_FLOW.replace('n: "5"', 'n: "five"').replace('flag: "false"', "flag: maybe"),
                     {"t.py": LITERAL_CODE})
    problems = {(p.where, p.field): p.message for p in validate_flow(root).problems}
    assert problems == {
        ("node 't'", "inputs.n"): "'five' is not a valid int for parameter 'n' of t() in t.py",
        ("node 't'", "inputs.flag"): "'maybe' is not a valid bool for parameter 'flag' of t() in t.py",
    }


HELPER_FLOW = """
inputs: {x: {type: string, default: a}}
outputs: {o: {reference: "${t.output}"}}
nodes:
- name: t
  type: python
  source: {type: code, path: t.py}
  inputs: {x: "${inputs.x}"}
"""
HELPER_TOOL = "from promptflow import tool\nfrom flowhelp import helper\n@tool\ndef t(x):\n    return helper(x)\n"


def test_each_flow_in_one_process_imports_its_own_helper_module(make_flow, factory):
    # the server runs many flows in one process: two flows' sibling `flowhelp.py` must not mix,
    # and an edited helper is read again on the next run
    one = make_flow(HELPER_FLOW, {"t.py": HELPER_TOOL, "flowhelp.py": "def helper(x):\n    return 'one:' + x\n"})
    two = make_flow(HELPER_FLOW, {"t.py": HELPER_TOOL, "flowhelp.py": "def helper(x):\n    return 'two:' + x\n"})
    outputs = [test_flow(root, {}, model_factory=factory).line.outputs["o"] for root in (one, two, one)]
    assert outputs == ["one:a", "two:a", "one:a"]
    (two / "flowhelp.py").write_text("def helper(x):\n    return 'edited:' + x\n")
    assert test_flow(two, {}, model_factory=factory).line.outputs["o"] == "edited:a"


def test_additional_includes_lend_nodes_their_source_files(tmp_path, write, factory):
    # Prompt flow copies additional_includes into the flow folder: a node names an included file by
    # its name, a file in an included folder by the folder's name and its path there
    write(tmp_path / "shared", {"tool.py": "from promptflow import tool\n@tool\ndef t(x):\n    return 'T:' + x\n",
                                "prompts/p.jinja2": "{{x}}!"})
    root = write(tmp_path / "flow", {"flow.dag.yaml": """
        inputs: {x: {type: string, default: a}}
        outputs: {o: {reference: "${p.output}"}}
        additional_includes:
        - ../shared/tool.py
        - ../shared/prompts/
        nodes:
        - name: t
          type: python
          source: {type: code, path: tool.py}
          inputs: {x: "${inputs.x}"}
        - name: p
          type: prompt
          source: {type: code, path: prompts/p.jinja2}
          inputs: {x: "${t.output}"}
    """})
    line = test_flow(root, {}, model_factory=factory).line
    assert line.status == "Completed", line.error
    assert line.outputs == {"o": "T:a!"}
    # a run's snapshot holds the included files, as Prompt flow's does: a resumed run loads it alone
    from tunery.flows.batch import RunSpec, create_run

    data = tmp_path / "data.jsonl"
    data.write_text('{"x": "b"}\n')
    first = create_run(RunSpec(flow=str(root), data=str(data), name="with-includes"), model_factory=factory)
    assert first.status == "Completed"
    assert (first.path / "flow" / "tool.py").is_file() and (first.path / "flow" / "prompts" / "p.jinja2").is_file()
    again = create_run(RunSpec(resume_from="with-includes", name="resumed"), model_factory=factory)
    assert again.status == "Completed"
    text = (root / "flow.dag.yaml").read_text().replace("- ../shared/prompts/", "- ../shared/nope")
    (root / "flow.dag.yaml").write_text(text)
    from tunery.flows import validate_flow

    problems = {(p.where, p.field): (p.severity, p.message) for p in validate_flow(root).problems}
    severity, message = problems[("additional_includes[1]", "")]
    assert severity == "warning" and message.startswith("'../shared/nope' not found")
    assert problems[("node 'p'", "source.path")][0] == "error"


INCLUDING_FLOW = """
inputs: {x: {type: string, default: a}}
outputs: {o: {reference: "${t.output}"}}
additional_includes: [../%s/shared_helper.py, ../lib/]
nodes:
- name: t
  type: python
  source: {type: code, path: t.py}
  inputs: {x: "${inputs.x}"}
"""
INCLUDING_TOOL = ("from promptflow import tool\nfrom shared_helper import f\nfrom lib.fmt import bang\n"
                  "@tool\ndef t(x):\n    return bang(f(x))\n")


def test_a_python_node_imports_modules_lent_by_additional_includes(tmp_path, write, factory):
    # Prompt flow copies additional_includes into the flow folder, so the flow's code imports them
    # as its own modules: an included file by its name, a file in an included folder by the folder's
    write(tmp_path / "lib", {"fmt.py": "def bang(x):\n    return x + '!'\n"})
    for who in ("one", "two"):
        write(tmp_path / who, {"shared_helper.py": f"def f(x):\n    return '{who}:' + x\n"})
    one = write(tmp_path / "flow_one", {"flow.dag.yaml": INCLUDING_FLOW % "one", "t.py": INCLUDING_TOOL})
    two = write(tmp_path / "flow_two", {"flow.dag.yaml": INCLUDING_FLOW % "two", "t.py": INCLUDING_TOOL})
    lines = [test_flow(root, {}, model_factory=factory).line for root in (one, two, one)]
    assert [line.error for line in lines] == [None] * 3
    # the server runs many flows in one process: each imports its own include, not the one before
    assert [line.outputs["o"] for line in lines] == ["one:a!", "two:a!", "one:a!"]
    # a flow that includes nothing does not find another flow's includes
    alone = write(tmp_path / "flow_alone", {"flow.dag.yaml": HELPER_FLOW,
                                            "t.py": INCLUDING_TOOL.replace("from lib.fmt import bang\n", "")})
    from tunery.flows import validate_flow

    assert "No module named 'shared_helper'" in str([p.message for p in validate_flow(alone).problems])

    # a run's snapshot holds the includes: resumed once they are gone, it imports its own copies
    from tunery.flows.batch import RunSpec, create_run

    data = tmp_path / "data.jsonl"
    data.write_text('{"x": "b"}\n')
    first = create_run(RunSpec(flow=str(one), data=str(data), name="lent"), model_factory=factory)
    assert first.status == "Completed"
    test_flow(two, {}, model_factory=factory)  # another flow's helper imported last
    (tmp_path / "one" / "shared_helper.py").unlink()
    (tmp_path / "lib" / "fmt.py").unlink()
    again = create_run(RunSpec(resume_from="lent", name="lent-again"), model_factory=factory)
    assert again.status == "Completed"


def test_python_lent_by_additional_includes_counts_in_the_code_fingerprint(tmp_path, write):
    # the server runs a clone's Python for any client only while it is the Python it was cloned
    # with: included modules are imported like the flow's own, so an edit of one is a code change
    from tunery.flows.library import code_fingerprint

    write(tmp_path / "lib", {"fmt.py": "def bang(x):\n    return x + '!'\n", "note.jinja2": "{{x}}"})
    write(tmp_path / "one", {"shared_helper.py": "def f(x):\n    return x\n"})
    root = write(tmp_path / "flow", {"flow.dag.yaml": INCLUDING_FLOW % "one", "t.py": INCLUDING_TOOL})
    before = code_fingerprint(root)
    (tmp_path / "lib" / "note.jinja2").write_text("{{x}}?")
    assert code_fingerprint(root) == before  # not Python
    for path in (tmp_path / "one" / "shared_helper.py", tmp_path / "lib" / "fmt.py"):
        text = path.read_text()
        path.write_text(text + "import os\n")
        assert code_fingerprint(root) != before, path
        path.write_text(text)
    assert code_fingerprint(root) == before
