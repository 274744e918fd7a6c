"""The prompt-flow exercise walked in headless Chromium against `tunery serve` with the tiny model:
clone Web Classification from the gallery, edit the classify prompt (a broken reference shows on
its node and field first), clone a variant and edit it, run both variants on one input side by
side, batch run & evaluate with the accuracy flow over the bundled data, open the run list and
compare two runs, then a run's detail and its export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

PROMPT = """# system:
You classify web pages. Categories: Movie, App, Academic, Channel, Profile, PDF, None.
Answer with one line of JSON: {"category": ..., "evidence": ...}.
# user:
URL: {{url}}
Text content: {{text_content}}
"""

SHORT_PROMPT = """# system:
Name the category of the page at this URL, one word.
# user:
{{url}}
"""


def save(page) -> None:
    page.click("#save-flow")
    page.wait_for_selector("body[data-dirty=false]")


def edit_source(page, text: str) -> None:
    page.fill("#source-edit", text)
    assert page.is_enabled("#save-flow")


def submit_batch(page, *, name: str, variant: str, evaluate: bool) -> None:
    page.select_option("#batch-variant", variant)
    page.select_option("#batch-model", "tiny-random")
    page.select_option("#batch-data", "flow:web-classification/data.jsonl")
    page.wait_for_selector("#data-preview table")
    assert page.input_value("#map-url") == "${data.url}"  # same-named columns are mapped for you
    page.select_option("#map-text_content", "${data.text_content}")
    box = "[data-eval='gallery:classification-accuracy-eval']"
    if evaluate != page.is_checked(box):
        page.click(box)
    if evaluate:
        page.select_option("#eval-gallery\\:classification-accuracy-eval-groundtruth", "${data.answer}")
        page.select_option("#eval-gallery\\:classification-accuracy-eval-prediction", "${run.outputs.category}")
    page.fill("#batch-name", name)
    page.click("#batch-submit")
    page.wait_for_selector(f"#batch-progress[data-run={name}]")
    page.wait_for_selector(f"#batch-progress[data-run={name}][data-state=Completed]", timeout=180_000)


def test_the_prompt_flow_exercise(page, studio, watch, shot):
    # gallery -> clone
    page.goto(f"{studio.url}/flows")
    page.wait_for_selector("#gallery[data-state=ready]")
    card = page.locator("[data-gallery=web-classification]")
    assert "url, text_content" in card.inner_text() and "category, evidence" in card.inner_text()
    shot(page, "flows-gallery")
    card.locator("[data-clone]").click()
    page.wait_for_url(f"{studio.url}/flows/web-classification")
    page.wait_for_selector("body[data-ready=true]")
    for node in ("inputs", "prepare_examples", "classify_with_llm", "convert_to_dict", "outputs"):
        assert page.locator(f"#graph [data-node={node}]").count() == 1
    assert page.locator("#graph .edge").count() >= 5

    # a broken reference is refused, and shown on its node and field
    page.click("#graph [data-node=convert_to_dict]")
    page.fill("[data-input=input_str]", "${classify_with_llm.outputs}")
    page.click("#save-flow")
    page.wait_for_selector("#problems:not([hidden])")
    assert "did you mean .output?" in page.inner_text("#problems")
    assert "bad" in page.get_attribute("#graph [data-node=convert_to_dict]", "class")
    assert "did you mean .output?" in page.inner_text("#editor .field-error[data-field='inputs.input_str']")
    shot(page, "flows-validation")
    page.fill("[data-input=input_str]", "${classify_with_llm.output}")  # back to the saved flow
    page.wait_for_selector("#problems", state="hidden")
    assert page.is_disabled("#save-flow")

    # edit the classify prompt: role markers are highlighted
    page.click("#graph [data-node=classify_with_llm]")
    assert page.get_attribute("#editor", "data-variant") == "variant_0"
    edit_source(page, PROMPT)
    assert page.locator("#editor .hl-role").count() == 2 and page.locator("#editor .hl-jinja").count() == 2
    save(page)

    # clone a variant, edit it
    page.click("#clone-variant")
    page.wait_for_selector("#editor[data-variant=variant_2]")
    assert page.input_value("#source-edit") == PROMPT
    edit_source(page, SHORT_PROMPT)
    save(page)
    shot(page, "flows-editor", full_page=True)

    # run both variants on one input, side by side
    page.click(".flow-tabs [data-tab=test]")
    page.select_option("#test-node", "classify_with_llm")
    page.uncheck("[data-test-variant=variant_1]")
    page.select_option("#test-model", "tiny-random")
    page.fill("[data-test-input=url]", "https://arxiv.org/abs/2401.00001")
    page.click("#run-test")
    page.wait_for_selector("#test-results[data-state=done]", timeout=120_000)
    columns = page.locator("#test-results .variant-result")
    assert [columns.nth(i).get_attribute("data-variant") for i in range(2)] == ["variant_0", "variant_2"]
    for i in range(2):
        col = columns.nth(i)
        assert col.get_attribute("data-status") == "Completed"
        assert col.locator("[data-node-run]").count() == 3  # every node: output, time, tokens
        assert "completion tokens" in col.inner_text()
    shot(page, "flows-variants", full_page=True)

    # batch run & evaluate with the accuracy flow, then a second run to compare with
    page.click(".flow-tabs [data-tab=batch]")
    submit_batch(page, name="web_v2", variant="${classify_with_llm.variant_2}", evaluate=True)
    lines = page.locator("#batch-lines .line-chip").count()
    assert lines == int(page.get_attribute("#data-preview", "data-rows")) == 8
    page.wait_for_selector("#batch-eval-status [data-eval-run][data-status=Completed]")
    shot(page, "flows-batch", full_page=True)
    submit_batch(page, name="web_v0", variant="${classify_with_llm.variant_0}", evaluate=True)

    # the run list: pick both and compare
    page.click("#view-run-list")
    page.wait_for_selector("#runs[data-state=ready]")
    page.check("[data-run=web_v2]")
    page.check("[data-run=web_v0]")
    page.click("#compare-runs")
    frame = page.frame_locator("#comparison")
    frame.locator("h1").wait_for()
    text = frame.locator("body").inner_text()
    assert "web_v2" in text and "web_v0" in text and "accuracy" in text
    shot(page, "flows-compare", full_page=True)

    # a run's detail: every line, its metrics by evaluation, and the export
    page.goto(f"{studio.url}/runs/web_v2")
    page.wait_for_selector("#run-lines[data-state=ready]")
    assert page.locator("#run-lines tr[data-line]").count() == lines
    assert "accuracy" in page.inner_text("#run-summary")
    shot(page, "flows-run", full_page=True)
    with page.expect_download() as dl:
        page.click("#export-jsonl")
    rows = [json.loads(x) for x in Path(dl.value.path()).read_text(encoding="utf-8").splitlines()]
    assert len(rows) == lines and "outputs.category" in rows[0]
    watch.check()
