"""Batch runs: column mappings from data and from a parent run, aggregation and metrics, failed
lines, timeouts, resume, and what a stored run holds."""

from __future__ import annotations

import json

import pytest

from tunery.errors import Conflict, InvalidInput
from tunery.flows import (
    RunSpec,
    create_run,
    get_run,
    list_runs,
    load_details,
    load_metrics,
    load_run_file,
    read_logs,
)
from tunery.serving import ScriptedChatModel

EVAL_FLOW = """
inputs:
  groundtruth: {type: string}
  prediction: {type: string}
  question: {type: string, default: ""}
outputs:
  grade: {reference: "${grade.output}"}
  asked: {reference: "${inputs.question}"}
nodes:
- name: grade
  type: python
  source: {type: code, path: grade.py}
  inputs: {groundtruth: "${inputs.groundtruth}", prediction: "${inputs.prediction}"}
- name: accuracy
  type: python
  source: {type: code, path: accuracy.py}
  inputs: {grades: "${grade.output}", questions: "${inputs.question}", scale: 100}
  aggregation: true
- name: report
  type: python
  source: {type: code, path: report.py}
  inputs: {summary: "${accuracy.output.correct}"}
  aggregation: true
"""
EVAL_FILES = {
    "grade.py": """
        from promptflow.core import tool

        @tool
        def grade(groundtruth: str, prediction: str) -> str:
            return "Correct" if groundtruth.lower() == prediction.strip("!").lower() else "Incorrect"
    """,
    "accuracy.py": """
        from promptflow.core import log_metric, tool

        @tool
        def accuracy(grades: list, questions: list, scale: int) -> dict:
            assert len(grades) == len(questions)
            log_metric("accuracy", round(grades.count("Correct") / len(grades) * scale, 2))
            return {"correct": grades.count("Correct")}
    """,
    "report.py": """
        from promptflow import log_metric, tool

        @tool
        def report(summary: int) -> int:
            log_metric("correct_lines", summary)
            return summary
    """,
}


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "data.jsonl"
    rows = [{"q": "alpha", "answer": "ALPHA"}, {"q": "boom", "answer": "x"}, {"q": "gamma", "answer": "wrong"},
            {"q": "delta", "answer": "DELTA"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def echo_model() -> ScriptedChatModel:
    return ScriptedChatModel(reply=lambda messages: messages[-1].content)


def test_batch_run_with_failed_line_and_stored_artifacts(qa_flow, data):
    progress = []
    run = create_run(RunSpec(flow=str(qa_flow), data=str(data), column_mapping={"question": "${data.q}"},
                             name="qa1", workers=3),
                     model_factory=lambda c, m: echo_model(), on_progress=progress.append)
    assert run.status == "Completed" and run.name == "qa1"
    assert (run.meta["total_lines"], run.meta["completed_lines"], run.meta["failed_lines"]) == (4, 3, 1)
    details = load_details(get_run("qa1"))
    assert [d["line_number"] for d in details] == [0, 1, 2, 3]
    assert details[0]["outputs"] == {"answer": "ALPHA!", "shout": "ALPHA"}
    assert details[1]["status"] == "Failed" and details[1]["error"]["node"] == "prep"
    assert details[0]["nodes"]["answer"]["output"] == "ALPHA"
    files = {p.name for p in run.path.iterdir()}
    assert {"flow", "run.json", "details.jsonl", "inputs.jsonl", "outputs.jsonl", "metrics.json", "logs.txt",
            "node_outputs"} <= files
    assert (run.path / "flow" / "flow.dag.yaml").exists() and (run.path / "flow" / "prep.py").exists()
    outputs = [json.loads(x) for x in (run.path / "outputs.jsonl").read_text().splitlines()]
    assert [o["line_number"] for o in outputs] == [0, 2, 3]  # successful lines only
    inputs = [json.loads(x) for x in (run.path / "inputs.jsonl").read_text().splitlines()]
    assert inputs[1] == {"line_number": 1, "question": "boom", "n": 2}
    prep = [json.loads(x) for x in (run.path / "node_outputs" / "prep.jsonl").read_text().splitlines()]
    assert len(prep) == 4 and prep[0]["output"] == {"q": "ALPHA", "n": 2}
    logs = read_logs(run)
    assert "line 1 failed: ValueError: cannot prepare boom" in logs and "[line 0] preparing alpha" in logs
    assert progress[-1].done == 4 and progress[-1].failed == 1 and progress[-1].total == 4
    assert [r.name for r in list_runs()] == ["qa1"] and run.meta["usage"]["completion_tokens"] > 0


def test_data_columns_map_by_name_and_defaults_fill_the_rest(qa_flow, tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"question": "one", "extra": 1}\n{"question": "two", "n": 7}\n')
    run = create_run(RunSpec(flow=str(qa_flow), data=str(path)), model_factory=lambda c, m: echo_model())
    assert run.name.startswith("qa_default_")
    ins = [d["inputs"] for d in load_details(run)]
    assert ins == [{"question": "one", "n": 2}, {"question": "two", "n": 7}]


def test_mapping_errors(qa_flow, data, tmp_path):
    with pytest.raises(InvalidInput, match=r"no line of data.jsonl has 'nope'") as e:
        create_run(RunSpec(flow=str(qa_flow), data=str(data), column_mapping={"question": "${data.nope}"}))
    assert "q, answer" in str(e.value) or "answer, q" in str(e.value)
    with pytest.raises(InvalidInput, match="needs a parent run"):
        create_run(RunSpec(flow=str(qa_flow), data=str(data), column_mapping={"question": "${run.outputs.a}"}))
    with pytest.raises(InvalidInput, match="must be"):
        create_run(RunSpec(flow=str(qa_flow), data=str(data), column_mapping={"question": "${foo.bar}"}))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"q": 1}\nnot json\n')
    with pytest.raises(InvalidInput, match="bad.jsonl line 2: not valid JSON"):
        create_run(RunSpec(flow=str(qa_flow), data=str(bad)))
    assert list_runs() == []  # nothing is created for a run that cannot start
    # a value missing from one row fails only that line
    partial = tmp_path / "partial.jsonl"
    partial.write_text('{"q": "a"}\n{"other": 1}\n')
    run = create_run(RunSpec(flow=str(qa_flow), data=str(partial), column_mapping={"question": "${data.q}"}),
                     model_factory=lambda c, m: echo_model())
    lines = load_details(run)
    assert lines[0]["status"] == "Completed" and lines[1]["status"] == "Failed"
    assert "input 'question': ${data.q} has no value" in lines[1]["error"]["message"]


def test_evaluation_run_grades_parent_line_by_line(qa_flow, data, make_flow):
    create_run(RunSpec(flow=str(qa_flow), data=str(data), column_mapping={"question": "${data.q}"}, name="base"),
               model_factory=lambda c, m: echo_model())
    eval_flow = make_flow(EVAL_FLOW, EVAL_FILES, name="eval")
    ev = create_run(RunSpec(flow=str(eval_flow), data=str(data), run="base", name="ev",
                            column_mapping={"groundtruth": "${data.answer}", "prediction": "${run.outputs.answer}",
                                            "question": "${run.inputs.question}"}))
    assert ev.status == "Completed" and ev.parent == "base"
    lines = load_details(ev)
    # the parent's failed line 1 is left out; line numbers follow the parent's
    assert [(d["line_number"], d["outputs"]["grade"], d["outputs"]["asked"]) for d in lines] == [
        (0, "Correct", "alpha"), (2, "Incorrect", "gamma"), (3, "Correct", "delta")]
    assert ev.metrics == {"accuracy": 66.67, "correct_lines": 2.0}
    assert load_metrics(get_run("ev")) == ev.metrics
    assert ev.meta["aggregation_nodes"]["accuracy"]["output"] == {"correct": 2}


def test_aggregation_failure_fails_the_run(make_flow, data):
    files = {**EVAL_FILES, "accuracy.py": "from promptflow.core import tool\n@tool\n"
                                          "def accuracy(grades, questions, scale):\n    return 1 / 0\n"}
    root = make_flow(EVAL_FLOW, files)
    run = create_run(RunSpec(flow=str(root), data=str(data),
                             column_mapping={"groundtruth": "${data.answer}", "prediction": "${data.q}"}))
    assert run.status == "Failed" and "aggregation node 'accuracy' failed: ZeroDivisionError" in run.meta["error"]
    assert run.meta["completed_lines"] == 4  # the lines themselves are kept


def test_every_line_failing_fails_the_run(qa_flow, tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"question": "boom"}\n')
    run = create_run(RunSpec(flow=str(qa_flow), data=str(path)), model_factory=lambda c, m: echo_model())
    assert run.status == "Failed" and "every line failed" in run.meta["error"]


def test_line_timeout_fails_only_that_line(qa_flow, tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"question": "fast"}\n{"question": "slow"}\n{"question": "quick"}\n')
    run = create_run(RunSpec(flow=str(qa_flow), data=str(path), line_timeout=0.5, workers=2),
                     model_factory=lambda c, m: echo_model())
    lines = {d["line_number"]: d for d in load_details(run)}
    assert lines[1]["status"] == "Failed" and lines[1]["error"]["type"] == "Timeout"
    assert "timed out after 0.5s" in lines[1]["error"]["message"]
    assert lines[0]["status"] == lines[2]["status"] == "Completed" and run.status == "Completed"


def test_resume_reruns_only_failed_lines(qa_flow, tmp_path, write):
    write(qa_flow, {"post.py": """
        import os
        from promptflow import tool

        @tool
        def post(text: str) -> str:
            if text in os.environ.get("FAIL_ON", "").split(","):
                raise RuntimeError("flaky " + text)
            return text + "!"
    """})
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"question": q}) + "\n" for q in ("a", "b", "c")))
    model = echo_model()
    first = create_run(RunSpec(flow=str(qa_flow), data=str(path), name="first",
                               environment_variables={"FAIL_ON": "B,C"}), model_factory=lambda c, m: model)
    assert first.meta["failed_lines"] == 2 and len(model.calls) == 3
    second = create_run(RunSpec(resume_from="first", name="second"), model_factory=lambda c, m: model)
    assert second.status == "Completed" and second.meta["failed_lines"] == 0 and second.meta["resume_from"] == "first"
    assert len(model.calls) == 5  # only lines 1 and 2 ran again
    lines = load_details(second)
    assert [d["outputs"]["answer"] for d in lines] == ["A!", "B!", "C!"]
    assert lines[0]["start"] == load_details(first)[0]["start"]  # line 0 was kept, not rerun
    assert get_run("first").status == "Completed"  # the original run is untouched


def test_run_names_are_unique(qa_flow, data):
    spec = RunSpec(flow=str(qa_flow), data=str(data), column_mapping={"question": "${data.q}"}, name="same")
    create_run(spec, model_factory=lambda c, m: echo_model())
    with pytest.raises(Conflict, match="already exists"):
        create_run(spec, model_factory=lambda c, m: echo_model())


def test_run_file(tmp_path, qa_flow, data, write):
    path = write(tmp_path / "cfg", {"run.yml": f"""
        $schema: https://azuremlschemas.azureedge.net/promptflow/latest/Run.schema.json
        flow: ../qa
        data: {data}
        variant: ${{answer.variant_1}}
        column_mapping:
          question: ${{data.q}}
        connections:
          answer:
            deployment_name: tiny-random
    """}) / "run.yml"
    spec = load_run_file(path)
    assert spec.flow == str(qa_flow.resolve()) and spec.column_mapping == {"question": "${data.q}"}
    assert spec.connections == {"answer": {"deployment_name": "tiny-random"}}
    merged = spec.merged(name="x", column_mapping={"n": "3"}, variant=None)
    assert merged.name == "x" and merged.variant == "${answer.variant_1}"
    assert merged.column_mapping == {"question": "${data.q}", "n": "3"}
    (path.parent / "bad.yml").write_text("flow: .\nworkerz: 3\n")
    with pytest.raises(InvalidInput, match="unknown setting"):
        load_run_file(path.parent / "bad.yml")


@pytest.mark.parametrize(("name", "content", "message"), [
    ("header.csv", "question,n\n", "header.csv has no lines under its header"),
    ("empty.csv", "", "empty.csv has no lines"),
    ("wide.csv", "question,n\na,1\nb,2,3\n", "wide.csv line 3: 3 fields, but the header names 2"),
    ("long.jsonl", '{"question": 1' + "0" * 5000 + "}\n", "long.jsonl line 1: not valid JSON (a number is too long"),
    ("deep.jsonl", '{"question": ' + "[" * 100_000 + "]" * 100_000 + "}\n", "deep.jsonl line 1: not valid JSON "
                                                                           "(nested too deeply)"),
    ("cut.jsonl", '{"question": "a"}\n{"question": \n', "cut.jsonl line 2: not valid JSON (Expecting value at column"),
])
def test_data_a_run_cannot_read_is_refused_naming_the_file_and_line(qa_flow, tmp_path, name, content, message):
    """Once a CSV row wider than its header crashed on its unnamed column (a 500 in the studio's
    upload), a header-only CSV ran as a run of 0 lines, and a JSON number or nesting past Python's
    limits crashed (500)."""
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InvalidInput) as e:
        create_run(RunSpec(flow=str(qa_flow), data=str(path)))
    assert str(e.value).startswith(message), str(e.value)
    with pytest.raises(InvalidInput, match=f"{tmp_path} is a folder"):
        create_run(RunSpec(flow=str(qa_flow), data=str(tmp_path)))
    assert list_runs() == []


@pytest.mark.parametrize(("spec", "env", "message"), [
    ({"workers": 0}, {}, "workers (--workers, or workers: in the run file) must be a whole number above 0, not 0"),
    ({"workers": "many"}, {}, "must be a whole number above 0, not 'many'"),
    ({"workers": 2.5}, {}, "must be a whole number above 0, not 2.5"),
    ({"line_timeout": 0}, {}, "line_timeout (--line-timeout, or line_timeout: in the run file) must be a number"),
    ({}, {"TUNERY_FLOW_WORKERS": "abc"}, "$TUNERY_FLOW_WORKERS must be a whole number above 0, not 'abc'"),
    ({}, {"TUNERY_FLOW_LINE_TIMEOUT": "-1"}, "$TUNERY_FLOW_LINE_TIMEOUT must be a number above 0, not '-1'"),
])
def test_workers_and_line_timeout_are_checked_not_ignored(qa_flow, data, monkeypatch, spec, env, message):
    """0 once fell back to the default in silence, and a word in a run file or the environment
    crashed (`unexpected ValueError`)."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(InvalidInput) as e:
        create_run(RunSpec(flow=str(qa_flow), data=str(data), column_mapping={"question": "${data.q}"}, **spec))
    assert message in str(e.value), str(e.value)


def test_a_parent_run_output_no_line_has_fails_the_evaluation_up_front(qa_flow, data, make_flow):
    """As a data column no line has does; it once ran, every line failing on its own."""
    create_run(RunSpec(flow=str(qa_flow), data=str(data), column_mapping={"question": "${data.q}"}, name="base"),
               model_factory=lambda c, m: echo_model())
    with pytest.raises(InvalidInput) as e:
        create_run(RunSpec(flow=str(make_flow(EVAL_FLOW, EVAL_FILES)), data=str(data), run="base",
                           column_mapping={"groundtruth": "${data.answer}", "prediction": "${run.outputs.answr}"}))
    assert str(e.value) == ("column mapping prediction=${run.outputs.answr}: no line of the parent run has outputs "
                            "'answr' (its outputs: answer, shout)")
    assert [r.name for r in list_runs()] == ["base"]


def test_what_flow_code_returns_is_stored_as_json_can_carry_it(make_flow, tmp_path):
    """An integer too long for Python to write in decimal once left the run Running for ever (its
    line could not be written), and an object or bytes made the studio's test call a 500."""
    root = make_flow("""
        inputs: {kind: {type: string}}
        outputs: {out: {reference: "${t.output}"}}
        nodes:
        - name: t
          type: python
          source: {type: code, path: t.py}
          inputs: {kind: "${inputs.kind}"}
    """, {"t.py": """
        from promptflow.core import tool

        class Thing:
            def __str__(self):
                return "a thing"

        @tool
        def t(kind: str):
            return {"big": 10 ** 5000, "thing": Thing(), "bytes": b"\\xff", "set": {1}, "nested": {2: (3,)}}[kind]
    """})
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"kind": k}) + "\n" for k in ("big", "thing", "bytes", "set", "nested")))
    run = create_run(RunSpec(flow=str(root), data=str(path), name="odd"))
    assert run.status == "Completed"
    assert [d["outputs"]["out"] for d in load_details(get_run("odd"))] == [
        "<an integer of 16610 bits>", "a thing", "b'\\xff'", [1], {"2": [3]}]
    from tunery.flows import test_flow

    result = test_flow(root, {"kind": "thing"}).to_dict()
    assert json.loads(json.dumps(result))["outputs"] == {"out": "a thing"}


def test_a_run_file_that_is_not_yaml_or_maps_a_node_to_a_word_is_named(tmp_path, qa_flow):
    """PyYAML's own message spans lines and quotes "<unicode string>"; a node mapped to a word
    once crashed (`unexpected TypeError`)."""
    from tunery.flows import test_flow

    path = tmp_path / "run.yml"
    path.write_text("flow: [a\n")
    with pytest.raises(InvalidInput) as e:
        load_run_file(path)
    assert str(e.value) == f"{path}: line 2: not valid YAML: expected ',' or ']', but got '<stream end>'"
    path.write_text("flow: .\nconnections: {answer: gpt-4}\n")
    with pytest.raises(InvalidInput, match=r"run.yml: connections.answer must be a mapping"):
        load_run_file(path)
    with pytest.raises(InvalidInput, match=r"--connections answer: give settings by name"):
        test_flow(qa_flow, {"question": "q"}, connections={"answer": "gpt-4"})  # type: ignore[dict-item]
