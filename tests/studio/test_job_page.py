"""The job page pauses and resumes a running job: the buttons follow the status, a paused job
shows the step it kept, and resuming trains on from there."""

from __future__ import annotations

import pytest
from studio_data import valid_lines

pytestmark = pytest.mark.browser


def test_the_job_page_pauses_and_resumes_a_job(page, studio, watch):
    import httpx

    upload = httpx.post(f"{studio.url}/v1/files", data={"purpose": "fine-tune"}, timeout=60,
                        files={"file": ("pause.jsonl", "".join(f"{line}\n" for line in valid_lines(16)).encode())})
    job = httpx.post(f"{studio.url}/v1/fine_tuning/jobs", timeout=60, json={
        "model": "tiny-random", "training_file": upload.json()["id"],
        "hyperparameters": {"n_epochs": 25, "batch_size": 1}}).json()
    try:
        page.goto(f"{studio.url}/jobs/{job['id']}")
        page.wait_for_selector("#job[data-status=running]", timeout=120_000)
        page.wait_for_function("document.querySelector('#chart-loss').dataset.points > 0", timeout=120_000)
        assert page.is_visible("#pause") and page.is_hidden("#resume")
        page.click("#pause")
        page.wait_for_selector("#job[data-status=paused]", timeout=60_000)
        assert page.is_hidden("#pause") and page.is_visible("#resume") and page.is_visible("#cancel")
        assert "paused" in page.inner_text("#progress-text")
        page.wait_for_function("document.querySelector('#events').innerText.includes('Fine-tuning job paused at step')")
        steps = httpx.get(f"{studio.url}/v1/fine_tuning/jobs/{job['id']}/checkpoints", timeout=60).json()
        kept = steps["data"][0]["step_number"]
        assert f"paused at step {kept}" in page.inner_text("#events")

        page.click("#resume")
        page.wait_for_selector("#job[data-status=running]", timeout=60_000)
        page.wait_for_function(f"document.querySelector('#events').innerText.includes("
                               f"'Resumed from checkpoint at step {kept}')", timeout=60_000)
        assert page.is_visible("#pause") and page.is_hidden("#resume")
    finally:
        httpx.post(f"{studio.url}/v1/fine_tuning/jobs/{job['id']}/cancel", timeout=60)
    watch.check()
