"""The HTML report of a two-model evaluation, opened in headless Chromium: charts and both
models' answers must be on the page. A screenshot goes to test-output/ for a person to look at."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tunery.evals import EndsWithQuestion, MaxWords, Recommends, run_eval
from tunery.serving.clients import ScriptedChatModel

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output"

pytestmark = pytest.mark.browser


def test_two_model_report_opens_with_charts_and_answers(browser, tmp_path):
    base = ScriptedChatModel(name="smollm2-base", replies=["I recommend the Hotel Artemide near Termini.",
                                                           "Try Osteria Francescana in Modena."])
    tuned = ScriptedChatModel(name="smollm2-travel", replies=["Trastevere is full of charm! What's your budget?",
                                                              "Cacio e pepe awaits! Do you like cheese?"])
    questions = [{"question": "Where in Rome should I stay?"}, {"question": "What should I eat in Italy?"}]
    report = run_eval(questions, {"smollm2-base": base, "smollm2-travel": tuned},
                      [Recommends(), EndsWithQuestion(), MaxWords(12)], system="Travel assistant.",
                      out_dir=tmp_path / "report", compare={"base": "smollm2-base", "tuned": "smollm2-travel"})

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(report.paths["html"].as_uri())

    charts = page.locator("svg.chart")
    assert charts.count() == 3
    assert [charts.nth(i).get_attribute("data-metric") for i in range(3)] == [
        "recommends", "ends_with_question", "max_words:12"]
    # a bar per model per metric, each drawn with a real size
    for i in range(3):
        bars = charts.nth(i).locator("rect.bar")
        assert sorted(bars.nth(k).get_attribute("data-model") for k in range(bars.count())) == [
            "smollm2-base", "smollm2-travel"]
    box = charts.nth(1).locator('rect.bar[data-model="smollm2-travel"]').bounding_box()
    assert box and box["height"] > 50  # 100% of answers end with a question: a full-height bar

    answers = page.locator("table.answers")
    assert "I recommend the Hotel Artemide near Termini." in answers.locator('td[data-model="smollm2-base"]').first.inner_text()
    assert "What's your budget?" in answers.locator('td[data-model="smollm2-travel"]').first.inner_text()
    assert page.locator(".badge.fail").count() >= 2 and page.locator(".badge.pass").count() >= 4
    assert "Δ (fine-tuned − base)" in page.locator("table.summary").inner_text()
    assert errors == []
    assert all(u.startswith("file://") for u in requests)  # self-contained: nothing fetched from elsewhere

    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "evals-report.png"), full_page=True)
    shutil.copy(report.paths["html"], SCREENSHOTS / "evals-report.html")
    page.close()
