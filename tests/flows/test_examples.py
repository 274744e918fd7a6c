"""The bundled example flows: valid, runnable end to end (the README walk-through with a scripted
model), and answered by real local models through the default model factory."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import tunery
from tunery.cli.main import cli
from tunery.flows import (
    RunSpec,
    compare_runs,
    create_run,
    get_run,
    load_details,
    load_run_file,
    set_default_variant,
    test_flow,
    validate_flow,
)
from tunery.serving import ScriptedChatModel

EXAMPLES = Path(tunery.__file__).parent / "examples" / "flows"
CATEGORIES = {"Movie", "App", "Academic", "Channel", "Profile", "PDF", "None"}


@pytest.fixture
def examples(tmp_path) -> Path:
    res = CliRunner().invoke(cli, ["flow", "examples", str(tmp_path / "flows")], catch_exceptions=False)
    assert res.exit_code == 0
    return tmp_path / "flows"


@pytest.mark.parametrize("name", ["web-classification", "summarization", "classification-accuracy-eval"])
def test_examples_are_valid(name):
    report = validate_flow(EXAMPLES / name)
    assert report.ok and not report.problems, [str(p) for p in report.problems]


def keyword_classifier(messages):
    """Variant 0 (few-shot, several turns) answers right; variant 1 calls everything an App."""
    if len(messages) > 2:
        text = messages[-1].content.lower()
        for word, cat in (("imdb", "Movie"), ("arxiv", "Academic"), ("youtube", "Channel"), ("linkedin", "Profile"),
                          ("pdf", "PDF"), ("app", "App")):
            if word in text:
                return f'{{"category": "{cat}", "evidence": "Both"}}'
        return '{"category": "None", "evidence": "Text content"}'
    return 'I think it is an App. {"category": "App", "evidence": "Url"}'


def test_walkthrough(examples):
    fake = ScriptedChatModel(reply=keyword_classifier)
    web = examples / "web-classification"
    mapping = {"url": "${data.url}", "text_content": "${data.text_content}"}
    for name, variant in (("web_v0", None), ("web_v1", "${classify_with_llm.variant_1}")):
        run = create_run(RunSpec(flow=str(web), data=str(web / "data.jsonl"), column_mapping=mapping, name=name,
                                 variant=variant), model_factory=lambda c, m: fake)
        assert run.status == "Completed" and run.meta["failed_lines"] == 0
        create_run(RunSpec(flow=str(examples / "classification-accuracy-eval"), data=str(web / "data.jsonl"),
                           run=name, name=f"eval_{name}", column_mapping={"groundtruth": "${data.answer}",
                                                                          "prediction": "${run.outputs.category}"}))
    data = compare_runs(["web_v0", "web_v1"])
    acc = {m["name"]: m["values"] for m in data["metrics"]}["accuracy"]
    assert acc == {"web_v0": 1.0, "web_v1": 0.25}
    assert {d["outputs"]["category"] for d in load_details(get_run("web_v1"))} == {"App"}
    set_default_variant(web, "classify_with_llm", "variant_1")
    dag = (web / "flow.dag.yaml").read_text()
    assert "# Classify a web page" in dag  # comments survive
    assert yaml.safe_load(dag)["node_variants"]["classify_with_llm"]["default_variant_id"] == "variant_1"
    assert test_flow(web, {}, model_factory=lambda c, m: fake).line.outputs == {"category": "App", "evidence": "Url"}


def test_summarization_variants(examples):
    fake = ScriptedChatModel(reply=lambda m: f'  "{m[0].content.split()[1]} summary"\nmore text')
    flow = examples / "summarization"
    out0 = test_flow(flow, {}, model_factory=lambda c, m: fake).line.outputs
    out1 = test_flow(flow, {}, model_factory=lambda c, m: fake, variant="${summarize.variant_1}").line.outputs
    assert out0 == {"summary": "are summary"} and out1 == {"summary": "write summary"}


def test_run_files_of_the_example(examples):
    spec = load_run_file(examples / "web-classification" / "run.yml")
    assert spec.variant == "${classify_with_llm.variant_1}" and Path(spec.data).name == "data.jsonl"
    ev = load_run_file(examples / "web-classification" / "run_evaluation.yml")
    assert Path(ev.flow).name == "classification-accuracy-eval" and ev.run == "web_v1"


def test_tiny_local_model_answers_a_flow(tiny_model, examples):
    """The default model factory, through tunery's own local engine (the tiny random model)."""
    result = test_flow(examples / "summarization", {"text": "Short text."}, default_model="tiny-random")
    assert result.line.status == "Completed", result.line.error
    assert isinstance(result.line.outputs["summary"], str)
    assert any("'gpt-35-turbo' is not known to tunery; 'tiny-random' answers" in w for w in result.warnings)


@pytest.mark.slow
def test_smollm2_classifies_through_run_create(smollm2, examples, tmp_path):
    web = examples / "web-classification"
    data = tmp_path / "two.jsonl"
    data.write_text("".join((web / "data.jsonl").read_text().splitlines(keepends=True)[:2]))
    run = create_run(RunSpec(flow=str(web), data=str(data), name="real",
                             connections={"classify_with_llm": {"deployment_name": "smollm2-135m-instruct"}},
                             column_mapping={"url": "${data.url}", "text_content": "${data.text_content}"}))
    assert run.status == "Completed" and run.meta["failed_lines"] == 0, run.meta
    lines = load_details(run)
    assert all(d["outputs"]["category"] in CATEGORIES for d in lines)
    assert all(d["nodes"]["classify_with_llm"]["usage"]["completion_tokens"] > 0 for d in lines)
    assert not run.meta["warnings"]  # the deployment was mapped: no fallback warning
