"""`tunery flow` and `tunery run`: thin edges over tunery.flows, with pf-style KEY=VALUE lists."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from tunery.cli.main import cli
from tunery.flows import list_runs
from tunery.serving import ScriptedChatModel


@pytest.fixture
def invoke(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # wide tables: no wrapped cells to search through
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(cli, list(args), catch_exceptions=False)

    return run


@pytest.fixture
def local_fake(monkeypatch):
    """The local model side answers every name with an echo; records the names asked for."""
    names: list[str] = []

    def get_chat_model(ref):
        names.append(ref)
        return ScriptedChatModel(name=ref, reply=lambda messages: messages[-1].content)

    monkeypatch.setattr("tunery.serving.resolve.get_chat_model", get_chat_model)
    monkeypatch.setattr("tunery.flows.connections.known_locally", lambda name: name == "my-model")
    return names


def test_validate(invoke, qa_flow, make_flow):
    ok = invoke("flow", "validate", "--flow", str(qa_flow))
    assert ok.exit_code == 0 and "valid:" in ok.output
    bad = make_flow((qa_flow / "flow.dag.yaml").read_text().replace("${answer.output}", "${answr.output}"),
                    {k: (qa_flow / k).read_text() for k in ("prep.py", "answer.jinja2", "post.py")})
    res = invoke("flow", "validate", "--flow", str(bad), "--json")
    assert res.exit_code == 1
    (problem,) = json.loads(res.output)["problems"]
    assert problem["where"] == "node 'post'" and problem["field"] == "inputs.text"
    assert "did you mean 'answer'" in problem["message"]


def test_flow_test_prints_every_node(invoke, qa_flow, local_fake):
    res = invoke("flow", "test", "--flow", str(qa_flow), "--inputs", "question=hi", "n=3")
    assert res.exit_code == 0, res.output
    for text in ("prep", "answer", "post", '{"q": "HI", "n": 3}', '"answer": "HI!"', "is not known to tunery"):
        assert text in res.output
    assert local_fake == ["smollm2-135m-instruct"]
    res = invoke("flow", "test", "--flow", str(qa_flow), "--inputs", "question=hi",
                 "--connections", "answer.deployment_name=my-model", "--json")
    assert json.loads(res.output)["outputs"] == {"answer": "HI!", "shout": "HI"} and local_fake[-1] == "my-model"
    failed = invoke("flow", "test", "--flow", str(qa_flow), "--inputs", "question=boom")
    assert failed.exit_code == 1 and "node 'prep': ValueError: cannot prepare boom" in failed.output
    node = invoke("flow", "test", "--flow", str(qa_flow), "--node", "post", "--inputs", "text=done")
    assert node.exit_code == 0 and "done!" in node.output and "prep" not in node.output


def test_run_create_evaluate_and_inspect(invoke, qa_flow, make_flow, local_fake, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"q": "a", "truth": "A!"}\n{"q": "boom", "truth": "x"}\n{"q": "c", "truth": "nope"}\n')
    res = invoke("run", "create", "--flow", str(qa_flow), "--data", str(data), "--column-mapping",
                 "question=${data.q}", "n=5", "--name", "base", "--stream")
    assert res.exit_code == 0, res.output
    assert "line 0: Completed" in res.output and "line 1: Failed" in res.output
    assert "3 lines, 1 failed" in res.output and "--resume-from base" in res.output
    ev_flow = make_flow("""
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
    """, {"grade.py": "from promptflow.core import tool\n@tool\ndef grade(truth, pred):\n"
                      "    return 'Correct' if truth == pred else 'Incorrect'\n",
          "acc.py": "from promptflow.core import tool, log_metric\n@tool\ndef acc(grades):\n"
                    "    log_metric('accuracy', grades.count('Correct') / len(grades))\n"})
    (tmp_path / "run_eval.yml").write_text(f"flow: {ev_flow}\ndata: d.jsonl\nrun: base\n"
                                           "column_mapping:\n  truth: ${data.truth}\n")
    res = invoke("run", "create", "--file", str(tmp_path / "run_eval.yml"), "--column-mapping",
                 "pred=${run.outputs.answer}", "--name", "ev")
    assert res.exit_code == 0, res.output
    assert 'metrics: {"accuracy": 0.5}' in res.output
    assert json.loads(invoke("run", "show-metrics", "-n", "ev").output) == {"accuracy": 0.5}
    shown = json.loads(invoke("run", "show", "-n", "ev").output)
    assert shown["run"] == "base" and shown["status"] == "Completed" and shown["total_lines"] == 2
    details = json.loads(invoke("run", "show-details", "-n", "base", "--json").output)
    assert [d["status"] for d in details] == ["Completed", "Failed", "Completed"]
    table = invoke("run", "show-details", "-n", "base").output
    assert "inputs.question" in table and "cannot prepare boom" in table
    listed = invoke("run", "list").output
    assert "base" in listed and "ev" in listed and "accuracy=0.5" in listed
    html = tmp_path / "cmp.html"
    res = invoke("run", "visualize", "-n", "base", "--html-path", str(html), "--no-open")
    assert res.exit_code == 0 and html.exists() and "Correct" in html.read_text()
    assert "cannot prepare boom" in invoke("run", "logs", "-n", "base").output
    missing = CliRunner().invoke(cli, ["run", "show", "-n", "nope"])
    assert missing.exit_code != 0 and "no run named 'nope'" in str(missing.exception)


def test_set_default_variant_keeps_the_file_layout(invoke, make_flow):
    text = """\
# my flow, hand-written
inputs:
  q: {type: string}
outputs:
  a: {reference: "${ask.output}"}
nodes:
- name: ask
  use_variants: true
node_variants:
  ask:
    # the one we ship
    default_variant_id: variant_0  # keep this comment
    variants:
      variant_0:
        node: {type: prompt, source: {type: code, path: t.jinja2}, inputs: {q: "${inputs.q}"}}
      variant_1:
        node: {type: prompt, source: {type: code, path: t.jinja2}, inputs: {q: "${inputs.q}"}}
"""
    root = make_flow(text, {"t.jinja2": "{{q}}"})
    res = invoke("flow", "set-default-variant", "--flow", str(root), "ask", "variant_1")
    assert res.exit_code == 0, res.output
    new = (root / "flow.dag.yaml").read_text()
    assert new == text.replace("default_variant_id: variant_0", "default_variant_id: variant_1")
    assert yaml.safe_load(new)["node_variants"]["ask"]["default_variant_id"] == "variant_1"
    res = CliRunner().invoke(cli, ["flow", "set-default-variant", "--flow", str(root), "ask", "variant_9"])
    assert res.exit_code != 0 and "no variant 'variant_9'" in str(res.exception)


@pytest.mark.parametrize("has_default", [True, False])
def test_set_default_variant_keeps_crlf_line_endings(invoke, make_flow, has_default):
    text = """\
# written on Windows\r
inputs: {q: {type: string}}\r
outputs: {a: {reference: "${ask.output}"}}\r
nodes:\r
- {name: ask, use_variants: true}\r
node_variants:\r
  ask:\r
    default_variant_id: variant_0\r
    variants:\r
      variant_0:\r
        node: {type: prompt, source: {type: code, path: t.jinja2}, inputs: {q: "${inputs.q}"}}\r
      variant_1:\r
        node: {type: prompt, source: {type: code, path: t.jinja2}, inputs: {q: "${inputs.q}"}}\r
"""
    if not has_default:
        text = text.replace("    default_variant_id: variant_0\r\n", "")
    root = make_flow("", {"t.jinja2": "{{q}}"})
    (root / "flow.dag.yaml").write_bytes(text.encode())
    assert invoke("flow", "set-default-variant", "--flow", str(root), "ask", "variant_1").exit_code == 0
    want = text.replace("default_variant_id: variant_0", "default_variant_id: variant_1") if has_default else \
        text.replace("  ask:\r\n", "  ask:\r\n    default_variant_id: variant_1\r\n")
    assert (root / "flow.dag.yaml").read_bytes() == want.encode()


def test_validate_names_the_file_of_a_yaml_error(make_flow):
    root = make_flow("inputs: [a, b\n")
    res = CliRunner().invoke(cli, ["flow", "validate", "--flow", str(root)], env={"COLUMNS": "500"})
    assert res.exit_code == 1
    assert f"error: {root / 'flow.dag.yaml'}: line 2: not valid YAML" in res.output


def test_examples_refuses_a_file_as_destination(tmp_path):
    dest = tmp_path / "good.jsonl"
    dest.write_text("{}\n")
    res = CliRunner().invoke(cli, ["flow", "examples", str(dest)])
    assert res.exit_code == 2 and "is a file, not a folder" in res.output
    assert dest.read_text() == "{}\n"


def test_set_default_variant_adds_a_missing_default(invoke, make_flow):
    root = make_flow("""\
inputs: {q: {type: string}}
outputs: {a: {reference: "${ask.output}"}}
nodes:
- {name: ask, use_variants: true}
node_variants:
  ask:
    variants:
      variant_0:
        node: {type: prompt, source: {type: code, path: t.jinja2}, inputs: {q: "${inputs.q}"}}
      variant_1:
        node: {type: prompt, source: {type: code, path: t.jinja2}, inputs: {q: "${inputs.q}"}}
""", {"t.jinja2": "{{q}}"})
    assert invoke("flow", "set-default-variant", "--flow", str(root), "ask", "variant_1").exit_code == 0
    assert yaml.safe_load((root / "flow.dag.yaml").read_text())["node_variants"]["ask"]["default_variant_id"] \
        == "variant_1"


def test_connections_commands(invoke):
    res = invoke("flow", "connection", "add", "remote", "--base-url", "http://127.0.0.1:9/v1", "--api-key-env", "K")
    assert res.exit_code == 0
    assert json.loads(invoke("flow", "connection", "list", "--json").output) == [
        {"name": "remote", "type": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key_env": "K"}]
    assert invoke("flow", "connection", "remove", "remote").exit_code == 0
    assert "No connections configured" in invoke("flow", "connection", "list").output


def test_flow_test_refuses_an_unknown_node_and_warns_of_an_unknown_input(invoke, qa_flow, local_fake):
    """An unknown --node once printed an empty table before its error; a misspelt --inputs name
    left the input's default in silence."""
    res = CliRunner().invoke(cli, ["flow", "test", "--flow", str(qa_flow), "--node", "answr"])
    assert res.exit_code != 0 and "┃" not in res.output
    assert str(res.exception) == "flow qa has no node 'answr' (nodes: prep, answer, post)"
    res = invoke("flow", "test", "--flow", str(qa_flow), "--inputs", "question=hi", "qestion=typo")
    assert res.exit_code == 0 and "warning: the flow has no input 'qestion'; ignored (its inputs: question, n)" \
        in res.output


def test_a_python_node_error_names_its_line_and_shows_only_the_users_traceback(invoke, qa_flow, local_fake):
    res = invoke("flow", "test", "--flow", str(qa_flow), "--inputs", "question=boom")
    assert res.exit_code == 1
    assert "error: node 'prep': ValueError: cannot prepare boom (prep.py, line 9)" in res.output
    assert 'prep.py", line 9, in prep' in res.output and "executor.py" not in res.output


def test_bad_values_of_list_options_are_refused(tmp_path):
    for args in (["run", "list", "-r", "0"], ["run", "show-details", "-n", "x", "-r", "-1"]):
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 2 and "x>=1" in res.output, res.output
    res = CliRunner().invoke(cli, ["flow", "connection", "add", "c", "--base-url", "localhost:8000/v1"])
    assert "is not an http:// or https:// URL" in str(res.exception)


def test_examples_into_a_folder_that_cannot_be_made_names_it(tmp_path):
    from tunery.home import CannotWrite

    (tmp_path / "a-file").write_text("x")
    res = CliRunner().invoke(cli, ["flow", "examples", str(tmp_path / "a-file" / "flows")])
    assert isinstance(res.exception, CannotWrite)
    assert str(res.exception) == f"cannot write {tmp_path / 'a-file' / 'flows'}: {tmp_path / 'a-file'} is a file, " \
                                 "not a folder"


def test_command_line_text_that_is_not_utf8_is_refused_naming_its_option(qa_flow, tmp_path, local_fake):
    """Python hands a byte that is not UTF-8 on as a lone surrogate: a run crashed writing it to
    its run.json and the database (`unexpected UnicodeEncodeError`). A flow folder so named still
    runs in `flow test`, which stores nothing."""
    import shutil

    from tunery.flows import test_flow

    bad = "caf\udce9"  # an argument whose bytes are "caf\xe9" (Latin-1)
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "q"}\n')
    for args, flag, fix in ((["flow", "test", "--flow", str(qa_flow), "--inputs", f"question={bad}"], "--inputs",
                             "give it as UTF-8 text"),
                            (["run", "create", "--flow", str(qa_flow), "--data", str(data), "--description", bad],
                             "--description", "give it as UTF-8 text"),
                            (["run", "create", "--flow", str(tmp_path / bad), "--data", str(data)], "--flow",
                             "rename it to a UTF-8 name")):
        res = CliRunner().invoke(cli, args, env={"COLUMNS": "300"})
        assert res.exit_code == 2, res.output
        assert f"Invalid value for {flag}: not UTF-8 text (byte " in res.output and fix in res.output, res.output
    assert list_runs() == []
    folder = shutil.copytree(qa_flow, tmp_path / bad)
    assert test_flow(folder, {"question": "hi"}).line.status == "Completed"
