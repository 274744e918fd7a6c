"""Parsing flow.dag.yaml: real Prompt flow files load; every malformed one is reported with the
node (or output) and the field at fault, all problems at once."""

from __future__ import annotations

import pytest

from tunery.errors import InvalidInput, NotFound
from tunery.flows import InvalidFlow, load_flow, validate_flow
from tunery.flows.refs import Reference, parse_flow_reference, parse_mapping_reference, parse_variant
from tunery.flows.spec import coerce_input

PY = {"a.py": "from promptflow.core import tool\n\n@tool\ndef a(x: str) -> str:\n    return x\n"}
TPL = {"t.jinja2": "# user:\n{{x}}\n"}


def node(name: str, ref: str = "${inputs.x}", extra: str = "", path: str = "a.py") -> str:
    return f"""
- name: {name}
  type: python
  source: {{type: code, path: {path}}}
  inputs:
    x: {ref}
{extra}"""


def dag(nodes: str, outputs: str = "out:\n    reference: ${a.output}", head: str = "") -> str:
    return f"{head}inputs:\n  x:\n    type: string\noutputs:\n  {outputs}\nnodes:{nodes}\n"


MALFORMED = [
    # (flow yaml, extra files, expected "where, field" text, expected message part)
    (dag(node("a") + node("b", "${nope.output}")), PY, "node 'b', inputs.x", "unknown node 'nope'"),
    (dag(node("a") + node("b", "${aa.output}")), PY, "node 'b', inputs.x", "did you mean 'a'"),
    (dag(node("a", "${inputs.y}")), PY, "node 'a', inputs.x", "unknown flow input 'y'"),
    (dag(node("a", "${inputs.x}") + node("b", "${a.outputs.k}")), PY, "node 'b', inputs.x", "did you mean .output"),
    (dag(node("a", "${b.output}") + node("b", "${a.output}")), PY, "inputs.x", "cycle: "),
    (dag(node("a", "${a.output}")), PY, "node 'a', inputs.x", "the node itself"),
    (dag(node("a"), outputs="out:\n    reference: ${zz.output}"), PY, "outputs.out, reference", "unknown node 'zz'"),
    (dag(node("a"), outputs="out:\n    type: string"), PY, "outputs.out, reference", "missing"),
    (dag(node("a", path="missing.py")), PY, "node 'a', source.path", "not found"),
    (dag(node("a") + "- name: b\n  type: python\n  source: {type: package, tool: x.y}\n"), PY,
     "node 'b', source.type", "not supported"),
    (dag(node("a") + "- name: b\n  type: csharp\n  source: {type: code, path: a.py}\n"), PY, "node 'b', type",
     "not supported"),
    (dag(node("a") + "- name: b\n  source: {type: code, path: a.py}\n"), PY, "node 'b', type", "not supported"),
    (dag(node("a") + "- name: b\n  type: python\n"), PY, "node 'b', source", "missing"),
    (dag(node("a") + node("a")), PY, "node 'a', name", "duplicate"),
    (dag(node("a") + "- type: python\n"), PY, "nodes[1], name", "needs a name"),
    (dag(node("a", extra="  activate:\n    when: ${inputs.x}\n")), PY, "node 'a', activate", "'when' and 'is'"),
    (dag(node("a") + "- name: v\n  use_variants: true\n"), PY, "node 'v', use_variants", "no node_variants"),
    (dag(node("a") + "- name: v\n  use_variants: true\n")
     + "node_variants:\n  v:\n    default_variant_id: variant_9\n    variants:\n      variant_0:\n        node:\n"
       "          type: python\n          source: {type: code, path: a.py}\n          inputs: {x: '${inputs.x}'}\n",
     PY, "node_variants.v, default_variant_id", "'variant_9'"),
    (dag(node("a") + "- name: v\n  use_variants: true\n")
     + "node_variants:\n  v:\n    variants:\n      variant_0:\n        node:\n"
       "          type: python\n          source: {type: code, path: a.py}\n          inputs: {x: '${zzz.output}'}\n",
     PY, "node 'v' (variant variant_0), inputs.x", "unknown node 'zzz'"),
    (dag(node("a") + node("agg", extra="  aggregation: true\n") + node("c", "${agg.output}")), PY,
     "node 'c', inputs.x", "only aggregation nodes"),
    (dag(node("a")).replace("type: string", "type: text"), PY, "inputs.x, type", "unknown type 'text'"),
    (dag(node("a") + "- name: t\n  type: llm\n  source: {type: code, path: t.jinja2}\n  inputs: {x: '${inputs.x}'}\n"),
     {**PY, "t.jinja2": "# user:\n{% for x in %}\n"}, "node 't', source.path", "template t.jinja2 line"),
    ("inputs: [a, b\n", {}, "line", "not valid YAML"),
    ("- just a list\n", {}, "flow", "must be a mapping"),
]


@pytest.mark.parametrize(("yaml_text", "files", "where", "message"), MALFORMED)
def test_malformed_flows_name_the_node_and_field(make_flow, yaml_text, files, where, message):
    root = make_flow(yaml_text, files)
    report = validate_flow(root)
    assert not report.ok
    text = "\n".join(str(p) for p in report.errors)
    assert where in text and message in text, text
    with pytest.raises(InvalidFlow) as e:
        load_flow(root)
    assert where in str(e.value)


def test_a_broken_variant_does_not_stand_in_for_its_default(make_flow):
    """The default variant is valid; the other names a missing file and is an aggregation node: only
    that variant's own problem is reported, not the default graph as if it were the broken one."""
    root = make_flow(dag(node("a") + "- name: v\n  use_variants: true\n" + node("post", "${v.output}"))
                     + "node_variants:\n  v:\n    default_variant_id: variant_0\n    variants:\n"
                       "      variant_0:\n        node:\n          type: python\n          source: {type: code, path: a.py}\n"
                       "          inputs: {x: '${inputs.x}'}\n"
                       "      variant_1:\n        node:\n          type: python\n          source: {type: code, path: nope.py}\n"
                       "          inputs: {x: '${inputs.x}'}\n          aggregation: true\n", PY)
    text = "\n".join(str(p) for p in validate_flow(root).errors)
    assert "node 'v' (variant variant_1), source.path" in text and "nope.py" in text, text
    assert "only aggregation nodes" not in text and "node 'post'" not in text, text


def test_all_problems_are_reported_at_once(make_flow):
    root = make_flow(dag(node("a", "${inputs.nope}") + node("b", "${ghost.output}")
                         + "- name: c\n  type: python\n  source: {type: code, path: gone.py}\n"), PY)
    errors = validate_flow(root).errors
    fields = {(p.where, p.field) for p in errors}
    assert {("node 'a'", "inputs.x"), ("node 'b'", "inputs.x"), ("node 'c'", "source.path")} <= fields


def test_a_malformed_reference_hides_no_other_problem_of_its_node(make_flow):
    root = make_flow(dag(node("a", extra="    t: ${inputs.nope}\n    u: ${a.output}\n    w: ${}\n")), PY)
    text = "\n".join(str(p) for p in validate_flow(root).errors)
    for problem in ("inputs.w: malformed reference ${}", "inputs.t: ${inputs.nope} references unknown flow input",
                    "inputs.u: ${a.output} references the node itself"):
        assert problem in text, text


@pytest.mark.parametrize(("data", "message"), [
    ("# flow\ninputs: {}\n".encode("utf-16"), "UTF-8"),
    (b"inputs: {}\n# caf\xe9\n", "line 2: not valid UTF-8 (byte 0xe9 at column 6): save the file as UTF-8"),
])
def test_a_flow_file_that_is_not_utf8_is_named(make_flow, data, message):
    from tunery.flows import set_default_variant
    from tunery.flows.library import FlowEntry, summary

    root = make_flow("")
    (root / "flow.dag.yaml").write_bytes(data)
    for check in (validate_flow, load_flow, lambda r: set_default_variant(r, "a", "variant_1")):
        with pytest.raises(InvalidInput) as e:
            check(root)
        assert str(root / "flow.dag.yaml") in str(e.value) and message in str(e.value)
    error = summary(FlowEntry("x", root, "link"))["error"]  # the studio's list shows it, not a 500
    assert str(root / "flow.dag.yaml") in error and message in error


def test_a_template_run_file_or_connections_file_that_is_not_utf8_is_named(make_flow, tmp_path, tunery_home):
    from tunery.flows.batch import load_run_file
    from tunery.flows.connections import connections_file, list_connections

    latin1 = "# caf\xe9\n".encode("latin-1")
    root = make_flow(dag(node("a") + "- name: t\n  type: llm\n  source: {type: code, path: t.jinja2}\n"
                                    "  inputs: {x: '${inputs.x}'}\n"), PY)
    (root / "t.jinja2").write_bytes(latin1 + b"# user:\n{{x}}\n")
    report = validate_flow(root)  # a problem of the node: the flow still opens, to be fixed
    assert [(p.where, p.field) for p in report.errors] == [("node 't'", "source.path")]
    assert "t.jinja2, line 1: " in report.errors[0].message and "byte 0xe9" in report.errors[0].message
    run = tmp_path / "run.yml"
    run.write_bytes(latin1 + b"flow: .\n")
    connections_file().parent.mkdir(parents=True, exist_ok=True)
    connections_file().write_bytes(latin1)
    for read, path in ((lambda: load_run_file(run), run), (list_connections, connections_file())):
        with pytest.raises(InvalidInput, match=r"line 1: .*byte 0xe9") as e:
            read()
        assert str(path) in str(e.value)


@pytest.mark.parametrize(("code", "where", "message"), [
    ("def a(:\n    pass\n", "node 'a', source.path", "SyntaxError at line 1"),
    ("import not_a_module_xyz\n", "node 'a', source.path", "ModuleNotFoundError"),
    ("from promptflow.core import tool\n\n@tool\ndef a(y: str):\n    return y\n", "node 'a', inputs.x",
     "has no parameter 'x'"),
    ("from promptflow.core import tool\n\n@tool\ndef a(x, y):\n    return y\n", "node 'a', inputs.y", "requires 'y'"),
    ("from promptflow import tool\n\n@tool\ndef a(x):\n    pass\n\n@tool\ndef b(x):\n    pass\n",
     "node 'a', source.path", "several @tool functions"),
    ("X = 1\n", "node 'a', source.path", "no @tool function"),
])
def test_python_code_problems_name_the_node_and_field(make_flow, code, where, message):
    report = validate_flow(make_flow(dag(node("a")), {"a.py": code}))
    text = "\n".join(str(p) for p in report.errors)
    assert where in text and message in text, text


def test_real_prompt_flow_file_loads_with_ignored_keys(make_flow):
    root = make_flow("""
        $schema: https://azuremlschemas.azureedge.net/promptflow/latest/Flow.schema.json
        environment:
          python_requirements_txt: requirements.txt
        additional_includes: [../shared]
        inputs:
          url: {type: string, default: "https://x", is_chat_input: false}
        outputs:
          category: {type: string, reference: "${convert.output.category}"}
        nodes:
        - name: summarize
          use_variants: true
        - name: convert
          type: python
          source: {type: code, path: a.py}
          inputs: {x: "${summarize.output}"}
        node_variants:
          summarize:
            default_variant_id: variant_1
            variants:
              variant_0:
                node:
                  type: llm
                  source: {type: code, path: t.jinja2}
                  inputs: {deployment_name: gpt-35-turbo, x: "${inputs.url}"}
                  provider: AzureOpenAI
                  connection: open_ai_connection
                  api: chat
                  module: promptflow.tools.aoai
              variant_1:
                node:
                  type: prompt
                  source: {type: code, path: t.jinja2}
                  inputs: {x: "${inputs.url}"}
    """, {**PY, "t.jinja2": "# user:\n{{x}}\n"})
    flow = load_flow(root)
    assert [n.name for n in flow.nodes] == ["summarize", "convert"]
    assert flow.node("summarize").type == "prompt" and flow.selected == {"summarize": "variant_1"}
    v0 = flow.with_variant("${summarize.variant_0}")
    assert v0.node("summarize").type == "llm" and v0.node("summarize").connection == "open_ai_connection"
    assert v0.variant_label == "variant_0" and flow.variant_label is None
    assert flow.outputs["category"].reference == Reference("convert", "output", ("category",),
                                                           "${convert.output.category}")
    with pytest.raises(InvalidInput, match="no variant 'variant_7'"):
        flow.with_variant("${summarize.variant_7}")
    with pytest.raises(InvalidInput, match="no variants"):
        flow.with_variant("${convert.variant_1}")


def test_missing_template_variable_is_a_warning_not_an_error(make_flow):
    root = make_flow(dag(node("a") + "- name: t\n  type: prompt\n  source: {type: code, path: t.jinja2}\n"
                         "  inputs: {x: '${inputs.x}'}\n"), {**PY, "t.jinja2": "{{x}} and {{y}}\n"})
    report = validate_flow(root)
    assert report.ok
    assert [str(w) for w in report.warnings] == [
        "node 't', inputs.y: template t.jinja2 uses {{ y }} but the node has no such input; it renders empty"]


def test_flow_folder_without_dag_file(tmp_path):
    with pytest.raises(NotFound, match="no flow.dag.yaml"):
        load_flow(tmp_path)


def test_reference_parsing():
    assert parse_flow_reference("plain text") is None
    assert parse_flow_reference("say ${inputs.x} please") is None  # not a whole reference: a literal
    assert parse_flow_reference("${inputs.x}") == Reference("inputs", "", ("x",), "${inputs.x}")
    assert parse_flow_reference("${n.output.a.b}").path == ("a", "b")
    for bad in ("${inputs}", "${inputs.a.b}", "${n}", "${n.result}", "${}", "${{inputs.x}}"):
        with pytest.raises(ValueError):
            parse_flow_reference(bad)
    assert parse_mapping_reference("${data.url}") == Reference("data", "", ("url",), "${data.url}")
    assert parse_mapping_reference("${run.outputs.category}").section == "outputs"
    assert parse_mapping_reference("${run.inputs.url}").section == "inputs"
    assert parse_mapping_reference("constant") is None
    with pytest.raises(ValueError):
        parse_mapping_reference("${run.output.category}")
    with pytest.raises(ValueError, match="malformed"):
        parse_mapping_reference("${{data.x}}")
    assert parse_variant("${summarize.variant_1}") == ("summarize", "variant_1")
    assert parse_variant("summarize.variant_1") == ("summarize", "variant_1")
    with pytest.raises(InvalidInput):
        parse_variant("${summarize}")


@pytest.mark.parametrize(("value", "type_", "expected"), [
    ("3", "int", 3), ("2.5", "double", 2.5), ("true", "bool", True), ("No", "bool", False),
    ('["a"]', "list", ["a"]), ('{"k": 1}', "object", {"k": 1}), (7, "string", "7"), ({"a": 1}, "string", '{"a": 1}'),
])
def test_input_coercion(value, type_, expected):
    assert coerce_input(value, type_, "x") == expected


@pytest.mark.parametrize(("value", "type_"), [("x", "int"), ("2.5", "int"), ("maybe", "bool"), ('{"a": 1}', "list")])
def test_input_coercion_errors_name_the_input(value, type_):
    with pytest.raises(InvalidInput, match="input 'x' must be of type"):
        coerce_input(value, type_, "x")
