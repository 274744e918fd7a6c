"""What a new user hit in the studio: a stopped answer and a failed turn in the playground keep
the transcript and what the model is sent alike; an ended job's page, or a job that does not
exist, does not wait for training steps; a failed upload in the wizard does not leave the list
naming the file it replaced."""

from __future__ import annotations

import json

import pytest
from studio_data import invalid_lines, set_number, valid_lines, write

pytestmark = pytest.mark.browser


def chat_requests(page) -> list[list[dict]]:
    """The messages of every chat request the page sends, as they are sent."""
    sent: list[list[dict]] = []
    page.on("request", lambda r: r.url.endswith("/v1/chat/completions") and sent.append(json.loads(r.post_data)["messages"]))
    return sent


def open_playground(page, studio, *, max_tokens: str, temperature: str) -> None:
    """The playground with an empty chat and these settings."""
    page.goto(f"{studio.url}/playground")
    page.wait_for_selector("#model[data-ready=true]")
    page.click("#clear-chat")
    set_number(page, "#pg-max_tokens", max_tokens)
    set_number(page, "#pg-temperature", temperature)


def ask(page, text: str) -> None:
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")


def test_a_stopped_answer_stays_in_the_conversation_the_model_is_sent(page, studio, watch):
    sent = chat_requests(page)
    open_playground(page, studio, max_tokens="4096", temperature="0")  # greedy: the same long answer every time
    ask(page, "first question")
    # Stop is pressed from inside the page, while the answer is still streaming
    page.wait_for_function("""() => {
        const answer = document.querySelector('.msg.assistant');
        if (!answer || answer.dataset.state !== 'streaming' || !(answer.dataset.chunks > 2)) return false;
        document.querySelector('#stop').click();
        return true;
    }""", timeout=60_000)
    page.wait_for_selector(".msg.assistant[data-state=stopped]")
    shown = page.inner_text(".msg.assistant .bubble")
    assert shown and page.locator(".msg.assistant .alert.error").count() == 0

    set_number(page, "#pg-max_tokens", "4")
    ask(page, "second question")
    page.wait_for_selector(".msg.assistant >> nth=1", state="attached")
    page.wait_for_function("document.querySelectorAll('.msg.assistant')[1].dataset.state !== 'streaming'")
    # what the page shows is what the model was sent: the first question and the part of its answer
    turns = [(m["role"], m["content"]) for m in sent[1] if m["role"] != "system"]
    assert turns == [("user", "first question"), ("assistant", shown), ("user", "second question")]
    watch.check()


def test_a_failed_turn_is_marked_unsent_and_its_text_comes_back(page, studio, watch):
    sent = chat_requests(page)
    open_playground(page, studio, max_tokens="4", temperature="9")  # the API refuses the temperature
    ask(page, "a long question I would hate to type again")
    page.wait_for_selector(".msg.assistant[data-state=error]")
    assert "temperature" in page.inner_text(".msg.assistant .alert.error")
    # the model never saw the message: the page says so, and gives the text back to send again
    assert page.get_attribute(".msg.user", "data-sent") == "false"
    assert "Not sent" in page.inner_text(".msg.user")
    assert page.input_value("#prompt") == "a long question I would hate to type again"

    set_number(page, "#pg-temperature", "0.7")
    page.press("#prompt", "Enter")
    page.wait_for_selector(".msg.assistant[data-state=done]")
    assert [m["content"] for m in sent[-1] if m["role"] == "user"] == ["a long question I would hate to type again"]
    watch.check()


def test_an_ended_job_without_steps_does_not_wait_for_them(page, studio, studio_home, watch):
    import httpx

    from tunery.jobs.runner import fail

    up = httpx.post(f"{studio.url}/v1/files", data={"purpose": "fine-tune"}, timeout=60,
                    files={"file": ("never.jsonl", "".join(f"{line}\n" for line in valid_lines(12)).encode())}).json()
    job = httpx.post(f"{studio.url}/v1/fine_tuning/jobs", timeout=60, json={
        "model": "tiny-random", "training_file": up["id"], "hyperparameters": {"n_epochs": 25, "batch_size": 1}}).json()
    fail(job["id"], "training failed: RuntimeError: out of memory", code="training_error")
    page.goto(f"{studio.url}/jobs/{job['id']}")
    page.wait_for_selector("#job[data-status=failed]")
    assert "out of memory" in page.inner_text("#job-error")
    for chart in ("#chart-loss", "#chart-acc"):
        text = page.inner_text(chart)
        assert "Waiting" not in text and "failed before its first step" in text
    assert "None yet" not in page.inner_text("#checkpoints")
    assert page.is_hidden("#cancel") and page.is_hidden("#pause") and page.is_hidden("#deploy-result")

    page.goto(f"{studio.url}/jobs/ftjob-nope")
    page.wait_for_selector("#job[data-status=missing]")
    assert "no fine-tuning job" in page.inner_text("#job-error")
    assert "Waiting" not in page.inner_text("#chart-loss") and "No such job" in page.inner_text("#chart-loss")
    watch.check()


def test_a_failed_upload_leaves_no_file_named_in_the_list(page, studio, watch, tmp_path):
    page.goto(f"{studio.url}/fine-tune")
    page.wait_for_selector("#base-model[data-ready=true]", state="attached")
    page.set_input_files("#training-file", str(write(tmp_path / "good.jsonl", valid_lines(12))))
    page.wait_for_selector("#training-report .report[data-ok=true]")
    assert page.input_value("#training-existing") != ""
    page.set_input_files("#training-file", str(write(tmp_path / "empty.jsonl", [])))
    page.wait_for_selector("#training-report .alert.error")
    assert "empty" in page.inner_text("#training-report")
    # nothing is chosen now, and the list says so rather than naming good.jsonl
    assert page.input_value("#training-existing") == ""
    assert page.is_disabled("#submit")
    watch.check()


def test_a_link_to_a_model_that_is_gone_says_so(page, studio, watch):
    page.goto(f"{studio.url}/playground?model=deleted-deployment")
    page.wait_for_selector("#model[data-ready=true]")
    # the page chats with another model meanwhile, and must say which, not switch unnoticed
    assert page.input_value("#model") == "tiny-random"
    alert = page.inner_text("#page-alert")
    assert "deleted-deployment" in alert and "tiny-random" in alert
    page.goto(f"{studio.url}/playground?model=tiny-random")
    page.wait_for_selector("#model[data-ready=true]")
    assert page.is_hidden("#page-alert")
    watch.check()


def test_a_refused_upload_is_removed_also_when_another_file_was_chosen_meanwhile(page, studio, watch, tmp_path):
    import httpx

    def names() -> list[str]:
        return [f["filename"] for f in httpx.get(f"{studio.url}/v1/files", timeout=60).json()["data"]]

    import re

    held = []  # the first file's check is held until the second file is chosen and checked

    def hold_first(route) -> None:
        if held:
            route.continue_()
        else:
            held.append(route)

    page.route(re.compile(r"/v1/tunery/files/[^/]+/report"), hold_first)
    page.goto(f"{studio.url}/fine-tune")
    page.wait_for_selector("#base-model[data-ready=true]", state="attached")
    page.set_input_files("#training-file", str(write(tmp_path / "hasty.jsonl", invalid_lines())))
    page.wait_for_function("document.querySelector('#training-status').textContent.includes('Checking hasty')")
    page.set_input_files("#training-file", str(write(tmp_path / "second.jsonl", valid_lines(12))))
    page.wait_for_selector("#training-report .report[data-ok=true]")
    page.wait_for_function("!document.querySelector('#submit').disabled")
    assert len(held) == 1
    held[0].continue_()  # now the first check ends, refusing its file
    # the first upload was refused: the wizard takes it back, as it does when nothing else was chosen
    for _ in range(50):
        if "hasty.jsonl" not in names():
            break
        page.wait_for_timeout(200)
    assert "hasty.jsonl" not in names() and "second.jsonl" in names()
    assert page.input_value("#training-existing") != ""  # and the file now chosen stays chosen
    assert "second.jsonl" in page.inner_text("#training-status")
    watch.check()
