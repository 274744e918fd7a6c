"""The fine-tuning journey in headless Chromium against `tunery serve` (with its worker) and the
tiny model: the wizard refuses an invalid file with line-numbered errors (and takes back its own
failed uploads) and submits a valid one; the job page's charts grow while the job trains until it
succeeds; the result is deployed and answers in the playground."""

from __future__ import annotations

import time

import pytest
from studio_data import invalid_lines, pair_lines, valid_lines, write

pytestmark = pytest.mark.browser

N_TRAIN, N_EPOCHS = 12, 3  # batch size 1: 36 steps, enough for the page's polls to see the charts grow


def open_wizard(page, studio) -> None:
    page.goto(f"{studio.url}/fine-tune")
    page.wait_for_selector("#base-model[data-ready=true]", state="attached")
    assert page.input_value("#base-model") == "tiny-random"


def test_wizard_rejects_an_invalid_file_with_line_numbered_errors(page, studio, watch, shot, tmp_path):
    open_wizard(page, studio)
    assert page.is_disabled("#submit")
    page.set_input_files("#training-file", str(write(tmp_path / "broken.jsonl", invalid_lines())))
    report = page.locator("#training-report .report")
    report.wait_for()
    assert report.get_attribute("data-ok") == "false" and report.get_attribute("data-errors") == "2"
    errors = page.locator("#training-report tr.issue[data-severity=error]")
    assert [errors.nth(i).get_attribute("data-line") for i in range(errors.count())] == ["3", "5"]
    text = page.locator("#training-report .issues").first.inner_text()
    assert "line 3" in text and "not valid JSON" in text
    assert "line 5" in text and "messages[0].role" in text and 'unknown role "robot"' in text
    assert "bad" in page.locator("#step-training").get_attribute("class").split()
    assert page.is_disabled("#submit")
    assert "errors" in page.inner_text("#submit-hint")
    shot(page, "fine-tune-invalid", full_page=True)
    watch.check()


def test_fine_tune_watch_the_job_then_deploy_and_chat(page, studio, watch, shot, tmp_path):
    open_wizard(page, studio)
    page.set_input_files("#training-file", str(write(tmp_path / "train.jsonl", valid_lines(N_TRAIN))))
    page.wait_for_selector("#training-report .report[data-ok=true]")
    assert page.locator("#training-report .token-stats").count() == 1
    page.set_input_files("#validation-file", str(write(tmp_path / "valid.jsonl", valid_lines(4, start=N_TRAIN))))
    page.wait_for_selector("#validation-report .report[data-ok=true]")
    page.fill("#suffix", "travel")
    page.click("#advanced summary")
    page.fill("#n_epochs", str(N_EPOCHS))
    page.fill("#batch_size", "1")
    page.fill("#seed", "3")
    page.wait_for_function("!document.querySelector('#submit').disabled")
    summary = page.inner_text("#summary")
    assert "train.jsonl" in summary and "valid.jsonl" in summary and "travel" in summary
    shot(page, "fine-tune-valid", full_page=True)
    page.click("#submit")

    page.wait_for_url(f"{studio.url}/jobs/ftjob-*")
    page.wait_for_selector("#job[data-status]", state="attached")
    total = N_TRAIN * N_EPOCHS
    seen: set[int] = set()
    status = None
    shot_taken = False
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = page.get_attribute("#job", "data-status")
        points = int(page.get_attribute("#chart-loss", "data-points") or 0)
        seen.add(points)
        if not shot_taken and 0 < points < total and points >= total // 3:
            shot(page, "job-running", full_page=True)
            shot_taken = True
        if status in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.2)
    assert status == "succeeded", page.inner_text("#job-error") + "\n" + studio.log_tail()
    page.wait_for_function(f"document.querySelector('#chart-loss').dataset.points === '{total}'")
    # the chart was drawn part-way and then grew: it updated while the job ran
    partial = sorted(p for p in seen if 0 < p < total)
    assert partial, f"the chart was only ever seen at {sorted(seen)} of {total} steps"
    assert int(page.get_attribute("#chart-loss", "data-updates")) >= 2
    assert page.locator("#chart-loss canvas").count() == 1 and page.locator("#chart-acc canvas").count() == 1
    legend = page.locator("#chart-loss .u-legend").inner_text()
    assert "training" in legend and "validation" in legend
    assert f"step {total} of {total}" in page.inner_text("#progress-text")
    assert page.locator("#checkpoints tr").count() >= 2 and page.locator("#checkpoints [data-deploy]").count() >= 1
    assert "The job has successfully completed" in page.inner_text("#events")
    model = page.inner_text("#job-title")
    assert model.startswith("ft:tiny-random:travel:")
    shot(page, "job", full_page=True)

    page.click("#deploy-result")
    assert page.input_value("#deploy-model") == model
    page.fill("#deploy-name", "travel-ft")
    page.click("#deploy-submit")
    page.wait_for_selector("#chat-with-deployment")
    assert "as travel-ft" in page.inner_text("#result-note")
    page.click("#chat-with-deployment")

    page.wait_for_selector("#model[data-ready=true]", state="attached")
    assert page.input_value("#model") == "travel-ft"
    page.fill("#pg-max_tokens", "16")
    page.press("#pg-max_tokens", "Tab")
    page.fill("#prompt", "What should I see in Rome?")
    page.press("#prompt", "Enter")
    page.wait_for_selector(".msg.assistant[data-state=done]", timeout=60_000)
    assert page.locator(".msg.assistant .who").inner_text() == "travel-ft"
    assert "out tokens" in page.inner_text(".msg.assistant .meta")
    shot(page, "playground-fine-tuned")

    page.goto(f"{studio.url}/jobs")
    page.wait_for_selector("#jobs[data-state=ready]", state="attached")
    assert page.locator("#jobs tr[data-status=succeeded]").count() == 1
    shot(page, "jobs")
    watch.check()


def upload_training(page, path) -> None:
    page.set_input_files("#training-file", str(path))
    page.wait_for_selector("#training-report .report[data-ok=true]")


def test_the_method_follows_the_kind_of_training_file(page, studio, watch, tmp_path):
    open_wizard(page, studio)
    assert page.input_value("#method") == "lora"
    upload_training(page, write(tmp_path / "pairs.jsonl", pair_lines(12)))
    # a file of preference pairs trains with DPO: the wizard switches, and says so beside the method
    assert page.input_value("#method") == "dpo"
    assert "preference pairs" in page.inner_text("#method-note")
    assert "DPO" in page.inner_text("#summary")
    page.wait_for_function("!document.querySelector('#submit').disabled")
    # choosing a supervised method for pairs again is flagged in the review, and Start stays off
    page.select_option("#method", "lora")
    assert page.locator("#method-mismatch").count() == 1
    assert page.is_disabled("#submit") and "DPO" in page.inner_text("#submit-hint")
    page.select_option("#method", "dpo")
    assert page.locator("#method-mismatch").count() == 0 and page.is_enabled("#submit")

    # and back: a chat file with DPO chosen switches to supervised
    upload_training(page, write(tmp_path / "chats.jsonl", valid_lines(12)))
    assert page.input_value("#method") == "lora"
    assert "chats" in page.inner_text("#method-note")
    page.select_option("#method", "dpo")
    assert page.is_disabled("#submit") and page.locator("#method-mismatch").count() == 1
    watch.check()


def test_bad_epochs_are_shown_at_the_field_not_blamed_on_the_file(page, studio, watch, tmp_path):
    open_wizard(page, studio)
    upload_training(page, write(tmp_path / "train.jsonl", valid_lines(12)))
    page.click("#advanced summary")
    page.fill("#n_epochs", "500")
    error = page.locator("#n_epochs").locator("xpath=..").locator(".field-error")
    error.wait_for()
    assert "n_epochs" in error.inner_text()
    # the file keeps its report and its verdict
    assert page.locator("#training-report .report[data-ok=true]").count() == 1
    assert "Could not check" not in page.inner_text("#training-report")
    assert "is valid" in page.inner_text("#training-status")
    assert "invalid" not in page.inner_text("#summary")
    assert page.is_disabled("#submit")
    page.fill("#n_epochs", "2")
    error.wait_for(state="detached")
    page.wait_for_function("!document.querySelector('#submit').disabled")
    watch.check()


def test_one_click_starts_the_job_right_after_typing_the_epochs(page, studio, watch, tmp_path):
    posted = []

    def fake_create(route):
        if route.request.method != "POST":
            return route.continue_()
        posted.append(route.request.post_data_json)
        return route.fulfill(json={"id": "ftjob-clicked", "object": "fine_tuning.job", "status": "queued"})

    page.route("**/v1/fine_tuning/jobs", fake_create)
    open_wizard(page, studio)
    upload_training(page, write(tmp_path / "train.jsonl", valid_lines(12)))
    page.click("#advanced summary")
    page.wait_for_function("!document.querySelector('#submit').disabled")
    page.click("#n_epochs")
    page.keyboard.type("2")
    watch.check()
    page.click("#submit")  # the field's blur comes with this click: the click must still count
    page.wait_for_url(f"{studio.url}/jobs/ftjob-clicked", timeout=10_000)
    assert len(posted) == 1 and posted[0]["method"]["supervised"]["hyperparameters"]["n_epochs"] == 2


def test_a_very_long_file_name_wraps(page, studio, watch, tmp_path):
    name = "x" * 190 + ".jsonl"
    open_wizard(page, studio)
    upload_training(page, write(tmp_path / name, valid_lines(12)))
    assert name in page.inner_text("#training-status")
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    page.goto(f"{studio.url}/data")
    page.wait_for_selector("#files [data-open]")
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    watch.check()


def server_files(studio) -> dict[str, str]:
    """The server's fine-tune files, id -> file name."""
    import httpx

    data = httpx.get(f"{studio.url}/v1/files", params={"purpose": "fine-tune"}, timeout=30).json()["data"]
    return {f["id"]: f["filename"] for f in data}


def upload_direct(studio, name: str, lines: list[str]) -> str:
    """A file uploaded before, not by the wizard: one to pick from its list of uploaded files."""
    import httpx

    body = "".join(f"{line}\n" for line in lines).encode()
    r = httpx.post(f"{studio.url}/v1/files", data={"purpose": "fine-tune"}, files={"file": (name, body)}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["id"]


def test_a_refused_upload_is_removed_but_a_refused_pick_is_not(page, studio, watch, tmp_path):
    picked = upload_direct(studio, "picked-broken.jsonl", invalid_lines())
    deleted = []
    page.on("request", lambda r: r.method == "DELETE" and deleted.append(r.url))
    open_wizard(page, studio)
    page.set_input_files("#training-file", str(write(tmp_path / "refused-upload.jsonl", invalid_lines())))
    page.wait_for_selector("#training-report .report[data-ok=false]")
    page.wait_for_function("document.querySelector('#training-status').textContent.includes('removed from the server')")
    status = page.inner_text("#training-status")
    assert "refused-upload.jsonl has errors: fix them and choose the file again" in status
    assert "refused-upload.jsonl" not in server_files(studio).values() and len(deleted) == 1
    # the report and the verdict stay; the list of uploaded files no longer offers it
    assert page.locator("#training-report tr.issue[data-severity=error]").count() == 2
    assert "bad" in page.get_attribute("#step-training", "class").split() and page.is_disabled("#submit")
    assert "refused-upload.jsonl invalid" in page.inner_text("#summary").lower()
    offered = page.evaluate("[...document.querySelector('#training-existing').options].map((o) => o.textContent)")
    assert not any("refused-upload.jsonl" in o for o in offered) and any(picked in o for o in offered)

    # a refused file the user picked from that list was not uploaded here: it stays
    page.select_option("#training-existing", picked)
    page.wait_for_function(f"document.querySelector('#training-status').textContent.includes('{picked}')")
    assert page.locator("#training-report .report[data-ok=false]").count() == 1
    assert server_files(studio).get(picked) == "picked-broken.jsonl" and len(deleted) == 1
    watch.check()


def test_a_job_that_is_not_created_takes_back_the_files_uploaded_for_it(page, studio, watch, tmp_path):
    picked = upload_direct(studio, "picked-valid.jsonl", valid_lines(4, start=N_TRAIN))
    answers = [(400, {"message": "Invalid 'n_epochs': too many for this file.", "param": "n_epochs"}),
               (503, {"message": "The job queue is full; try again later.", "param": None})]

    def refuse(route):
        if route.request.method != "POST":
            return route.continue_()
        status, error = answers.pop(0)
        return route.fulfill(status=status, json={"error": {**error, "type": "invalid_request_error", "code": None}})

    page.route("**/v1/fine_tuning/jobs", refuse)
    open_wizard(page, studio)
    page.click("#advanced summary")
    upload_training(page, write(tmp_path / "uploaded-train.jsonl", valid_lines(N_TRAIN)))
    uploaded = page.input_value("#training-existing")
    assert server_files(studio).get(uploaded) == "uploaded-train.jsonl"
    page.select_option("#validation-existing", picked)
    page.wait_for_selector("#validation-report .report[data-ok=true]")
    page.wait_for_function("!document.querySelector('#submit').disabled")

    # refused for a field: that is fixed in place, and the files stay for the next try
    page.fill("#n_epochs", "40")
    page.wait_for_function("!document.querySelector('#submit').disabled")
    page.click("#submit")
    page.locator("#n_epochs").locator("xpath=..").locator(".field-error").wait_for()
    assert server_files(studio).get(uploaded) == "uploaded-train.jsonl"
    assert page.input_value("#training-existing") == uploaded

    # refused otherwise: the training file uploaded for this job goes, the validation file picked from the list stays
    page.fill("#n_epochs", "2")
    page.locator("#n_epochs").locator("xpath=..").locator(".field-error").wait_for(state="detached")
    page.wait_for_function("!document.querySelector('#submit').disabled")
    page.click("#submit")
    page.wait_for_function("document.querySelector('#training-status').textContent.includes('removed from the server')")
    assert "The job queue is full" in page.inner_text("#submit-error")
    files = server_files(studio)
    assert uploaded not in files and files.get(picked) == "picked-valid.jsonl"
    assert page.locator("#training-report .report").count() == 0 and page.is_disabled("#submit")
    assert page.locator("#validation-report .report[data-ok=true]").count() == 1
    assert answers == []
    watch.check()
