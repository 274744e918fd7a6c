"""The studio in headless Chromium against `tunery serve` with the tiny model: the playground
streams (and says why a model's first answer is slow to start), the view-code snippet runs,
compare answers in parallel columns, API errors read as messages, an unknown address is a page of
its own, and the data, models, flows and runs pages show what the API holds."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest
from studio_data import BAD_ROLE, set_number, valid_lines, write

pytestmark = pytest.mark.browser

DONE = ".msg.assistant[data-state=done]"


def open_page(page, studio, path: str, ready: str) -> None:
    page.goto(f"{studio.url}{path}")
    page.wait_for_selector(ready, state="attached")


def test_playground_streams_an_answer_and_shows_its_numbers(page, studio, watch, shot):
    open_page(page, studio, "/playground", "#model[data-ready=true]")
    assert page.input_value("#model") == "tiny-random"
    set_number(page, "#pg-max_tokens", "24")
    set_number(page, "#pg-seed", "7")

    # Shift+Enter starts a new line; Enter sends
    page.click("#prompt")
    page.keyboard.type("Where in Rome should I stay?")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("Near the food, please.")
    assert page.input_value("#prompt") == "Where in Rome should I stay?\nNear the food, please."
    assert page.locator(".msg.user").count() == 0
    page.keyboard.press("Enter")

    page.wait_for_selector(DONE, timeout=60_000)
    assert page.locator(".msg.user .bubble").inner_text() == "Where in Rome should I stay?\nNear the food, please."
    answer = page.locator(".msg.assistant").first
    assert int(answer.get_attribute("data-chunks")) > 1  # it arrived in pieces, as a stream
    assert answer.locator(".bubble").inner_text().strip()
    meta = answer.locator(".meta").inner_text()
    assert "out tokens" in meta and "first token" in meta and " s" in meta
    assert page.input_value("#prompt") == ""

    # a second turn continues the conversation
    page.fill("#prompt", "And what should I eat?")
    page.press("#prompt", "Enter")
    page.wait_for_function(f"document.querySelectorAll('{DONE}').length === 2", timeout=60_000)
    shot(page, "playground")
    watch.check()


WAITS = """() => {
  // every note a bubble shows while it waits for its answer, however briefly
  window.waits = [];
  new MutationObserver((changes) => changes.forEach((c) => c.target.dataset.waiting && window.waits.push(c.target.dataset.waiting)))
    .observe(document.querySelector('#chat'), { subtree: true, attributes: true, attributeFilter: ['data-waiting'] });
}"""


def test_a_first_answer_says_the_fast_copy_is_being_prepared(page, studio, studio_home, watch, shot, tmp_path,
                                                               tiny_model_dir):
    import httpx
    from safetensors.torch import load_file, save_file

    from tunery.models import ModelRecord, register
    from tunery.models.catalog import CATALOG

    # the tiny model with one weight changed: weights whose compiled copy the server has never built
    fresh = shutil.copytree(tiny_model_dir, tmp_path / "tiny-fresh")
    weights = load_file(fresh / "model.safetensors")
    first = next(iter(weights))
    weights[first].view(-1)[0] += 0.5
    save_file(weights, fresh / "model.safetensors", metadata={"format": "pt"})
    register(ModelRecord(id="tiny-fresh", kind="base", path=fresh, source="builtin-tiny",
                         meta={"catalog": "tiny-random", "context_length": CATALOG["tiny-random"].context_length}))
    serving = httpx.get(f"{studio.url}/v1/models/tiny-fresh", timeout=30).json()["serving"]
    assert serving["engine"] == "onnx" and serving["compiled"] is None  # what the studio goes by

    open_page(page, studio, "/playground?model=tiny-fresh", "#model[data-ready=true]")
    assert page.input_value("#model") == "tiny-fresh"
    set_number(page, "#pg-max_tokens", "8")
    page.evaluate(WAITS)
    page.fill("#prompt", "Hello")
    page.press("#prompt", "Enter")
    # from the start, while the server builds the copy: what it is doing, and that it happens once
    note = page.locator(".msg.assistant[data-waiting=first-use] .meta")
    note.wait_for()
    assert "Preparing the fast int8 copy of tiny-fresh" in note.inner_text() and "first use only" in note.inner_text()
    assert note.locator(".spinner").count() == 1
    shot(page, "playground-first-use")
    page.wait_for_selector(DONE, timeout=240_000)
    answer = page.locator(".msg.assistant").first
    assert answer.get_attribute("data-waiting") is None and answer.locator(".spinner").count() == 0
    assert "out tokens" in answer.locator(".meta").inner_text()
    assert httpx.get(f"{studio.url}/v1/models/tiny-fresh", timeout=30).json()["serving"]["compiled"] is not None

    # the studio asked the server again: the next answer starts without the note
    page.evaluate("window.waits = []")
    page.fill("#prompt", "Again")
    page.press("#prompt", "Enter")
    page.wait_for_function(f"document.querySelectorAll('{DONE}').length === 2", timeout=60_000)
    assert page.evaluate("window.waits") == []
    watch.check()


def test_a_slow_start_gets_a_note_that_goes_when_the_answer_starts_or_fails(page, studio, watch):
    import httpx

    # the copy built and the engine loaded (by this or an earlier test): only the held request is slow
    httpx.post(f"{studio.url}/v1/chat/completions", json={"model": "tiny-random", "max_tokens": 1,
                                                           "messages": [{"role": "user", "content": "hi"}]}, timeout=240)
    held = []
    page.route("**/v1/chat/completions", lambda route: held.append(route))
    open_page(page, studio, "/playground", "#model[data-ready=true]")
    set_number(page, "#pg-max_tokens", "8")
    page.fill("#prompt", "Hello")
    page.press("#prompt", "Enter")
    bubble = page.locator(".msg.assistant").first
    assert "Waiting for the first token" in bubble.locator(".meta").inner_text()  # no note for a model known ready
    page.wait_for_selector(".msg.assistant[data-waiting=slow]", timeout=15_000)
    assert "Still working" in bubble.locator(".meta").inner_text() and bubble.locator(".spinner").count() == 1
    held.pop().continue_()
    page.wait_for_selector(DONE, timeout=60_000)
    assert bubble.get_attribute("data-waiting") is None and bubble.locator(".spinner").count() == 0
    assert "out tokens" in bubble.locator(".meta").inner_text()

    # and when the request fails instead
    page.fill("#prompt", "Once more")
    page.press("#prompt", "Enter")
    failing = page.locator(".msg.assistant").nth(1)
    page.wait_for_selector(".msg.assistant[data-waiting=slow]", timeout=15_000)  # the first has none now
    held.pop().fulfill(status=503, json={"error": {"message": "The server is busy.", "type": "server_error",
                                                   "param": None, "code": None}})
    page.wait_for_selector(".msg.assistant[data-state=error]")
    assert failing.get_attribute("data-waiting") is None and failing.locator(".spinner").count() == 0
    assert "The server is busy." in failing.inner_text()
    watch.check()


def test_view_code_is_the_same_request_and_the_python_runs(page, studio, watch, shot, tmp_path):
    open_page(page, studio, "/playground", "#model[data-ready=true]")
    page.fill("#system", "You answer in one short sentence.")
    assert page.is_enabled("#apply-system")
    page.click("#apply-system")
    assert page.locator("#system-state").inner_text() == "Applied"
    set_number(page, "#pg-max_tokens", "5")
    page.fill("#prompt", "Hello there")
    page.click("#view-code")
    code = page.locator("#code-dialog code")
    python = code.inner_text()
    assert f'base_url="{studio.url}/v1"' in python and 'model="tiny-random"' in python
    assert '"content": "You answer in one short sentence."' in python and '"content": "Hello there"' in python
    assert "max_tokens=5," in python and "stream=True" in python
    shot(page, "view-code")
    page.click("#code-dialog [data-tab=curl]")
    curl = code.inner_text()
    assert curl.startswith(f"curl {studio.url}/v1/chat/completions") and '"max_tokens": 5' in curl

    # the snippet is real: the openai SDK runs it against this server
    script = tmp_path / "snippet.py"
    script.write_text(python)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip()
    watch.check()


def test_an_api_error_is_a_readable_message_not_a_blank_page(page, studio, watch):
    open_page(page, studio, "/playground", "#model[data-ready=true]")
    set_number(page, "#pg-temperature", "5")  # the API allows 0-2
    page.fill("#prompt", "hi")
    page.press("#prompt", "Enter")
    error = page.locator(".msg.assistant[data-state=error] .alert.error")
    error.wait_for()
    assert "temperature" in error.inner_text()
    # the failed turn is not kept: clear chat leaves an empty transcript
    page.click("#clear-chat")
    assert page.locator(".msg").count() == 0

    page.goto(f"{studio.url}/jobs/ftjob-nope")
    page.wait_for_selector("#job-error .alert.error")
    assert "no fine-tuning job with id 'ftjob-nope'" in page.locator("#job-error").inner_text()
    watch.check()


def test_an_unknown_address_is_a_page_that_leads_home(page, studio, watch, shot):
    reply = page.goto(f"{studio.url}/nope")
    assert reply.status == 404 and reply.headers["content-type"].startswith("text/html")
    assert page.inner_text("h1") == "Page not found"
    assert "There is no studio page at /nope." in page.inner_text(".page-head")
    assert page.locator("nav [data-nav]").count() >= 8  # the studio's own page, with its navigation
    shot(page, "not-found")
    page.click("#home-link")
    page.wait_for_selector("#model[data-ready=true]", state="attached")
    assert page.url == f"{studio.url}/"
    # the API keeps its JSON error, asked from the address bar too
    reply = page.goto(f"{studio.url}/v1/nope")
    assert reply.status == 404 and json.loads(page.inner_text("body"))["error"]["code"] == "unknown_url"
    watch.check()


def test_compare_two_columns_answer_the_same_prompt_and_the_exercise(page, studio, watch, shot):
    open_page(page, studio, "/compare", "#columns[data-ready=true]")
    page.wait_for_selector("#questions button")
    assert page.locator(".column").count() == 2
    assert page.input_value("#system").startswith("You are an AI travel assistant")
    set_number(page, "#cmp-max_tokens", "12")

    page.fill("#prompt", "What should I pack for Kyoto?")
    page.press("#prompt", "Enter")
    page.wait_for_function(f"document.querySelectorAll('{DONE}').length === 2", timeout=60_000)
    for tag in ("A", "B"):
        column = page.locator(f".column[data-column={tag}]")
        assert column.locator(".msg.user .bubble").inner_text() == "What should I pack for Kyoto?"
        assert column.locator(DONE).count() == 1

    # one click asks the exercise's five questions, in order, as one conversation in every column
    page.click("#ask-exercise")
    page.wait_for_function(f"document.querySelectorAll('{DONE}').length === 10", timeout=120_000)
    questions = [page.locator("#questions button").nth(i).locator("span").nth(1).inner_text() for i in range(5)]
    assert questions[0] == "Where in Rome should I stay?"
    for tag in ("A", "B"):
        asked = page.locator(f".column[data-column={tag}] .msg.user .bubble").all_inner_texts()
        assert asked == questions
    shot(page, "compare")

    # three columns, and sync off gives each its own prompt box
    page.click("[data-columns='3']")
    assert page.locator(".column").count() == 3
    page.uncheck("#sync")
    assert page.locator(".column .composer:visible").count() == 3 and not page.is_visible("#composer")
    box = page.locator(".column[data-column=C] textarea").last
    box.fill("Only C hears this")
    box.press("Enter")
    page.wait_for_selector(f".column[data-column=C] {DONE}", timeout=60_000)
    assert page.locator(".column[data-column=A] .msg.user").count() == 5
    watch.check()


def test_data_page_shows_the_report_by_line_and_the_pii_scan(page, studio, watch, shot, tmp_path):
    lines = valid_lines(12)
    lines[4] = BAD_ROLE
    lines[6] = json.dumps({"messages": [{"role": "user", "content": "Call me on +44 20 7946 0958 or jane@example.com"},
                                        {"role": "assistant", "content": "Noted."}]})
    path = write(tmp_path / "mixed.jsonl", lines)
    open_page(page, studio, "/data", "#files[data-state=ready]")
    page.set_input_files("#upload-file", str(path))
    report = page.locator("#report .report")
    report.wait_for()
    assert report.get_attribute("data-ok") == "false"
    rows = page.locator("#report .issues tr.issue[data-severity=error]")
    assert rows.count() == 1 and rows.first.get_attribute("data-line") == "5"
    assert "messages[0].role" in rows.first.inner_text()
    assert page.locator("#report .token-stats").count() == 1  # measured with the tiny model's tokenizer
    pii = page.locator("#report .pii")
    assert int(pii.get_attribute("data-found")) >= 1 and "EMAIL" in pii.inner_text()
    assert page.locator("#files tr[data-file]").count() >= 1
    shot(page, "data", full_page=True)
    watch.check()


def test_models_page_creates_and_deletes_a_deployment(page, studio, watch, shot):
    page.on("dialog", lambda d: d.accept())
    open_page(page, studio, "/models", "#base table")
    page.click("#new-deployment")
    page.fill("#deploy-name", "travel-test")
    page.fill("#deploy-tpm", "5000")
    page.fill("#deploy-rpm", "1.5")  # said in the dialog (the form is novalidate), the field marked
    page.click("#deploy-submit")
    page.wait_for_selector("#deploy-error .alert.error")
    assert "Requests per minute must be a whole number" in page.locator("#deploy-error").inner_text()
    assert page.get_attribute("#deploy-rpm", "aria-invalid") == "true"
    page.fill("#deploy-rpm", "30")
    page.select_option("#deploy-filter", "strict")
    page.select_option("#deploy-precision", "fp32")
    page.click("#deploy-submit")
    page.wait_for_selector("#deployments tr[data-deployment=travel-test]")
    row = page.locator("#deployments tr[data-deployment=travel-test]").inner_text()
    assert "tiny-random" in row and "5,000" in row and "strict" in row and "fp32" in row
    assert "0 of 30" in row  # requests in the last minute, of the limit
    # how each model is served: the base on the fast path by default
    assert page.locator("#base [data-serving]").first.get_attribute("data-serving") == "int8"

    # the same name again: the API's conflict shows in the dialog
    page.click("#new-deployment")
    page.fill("#deploy-name", "travel-test")
    page.click("#deploy-submit")
    page.wait_for_selector("#deploy-error .alert.error")
    assert "already exists" in page.locator("#deploy-error").inner_text()
    page.click("#deploy-cancel")
    shot(page, "models")

    page.click("[data-delete-deployment=travel-test]")
    page.wait_for_selector("#deployments tr[data-deployment=travel-test]", state="detached")
    watch.check()


def test_the_deploy_dialog_starts_clean_and_drops_an_old_error_when_sent_again(page, studio, watch):
    import httpx

    page.on("dialog", lambda d: d.accept())
    created = httpx.post(f"{studio.url}/v1/deployments", json={"name": "clean-test", "model": "tiny-random"}, timeout=60)
    assert created.status_code == 200, created.text
    refusal = {"error": {"message": "The deployment is in use.", "type": "invalid_request_error", "param": None,
                         "code": None}}
    page.route("**/v1/deployments/clean-test",
               lambda route: route.fulfill(status=409, json=refusal) if route.request.method == "DELETE" else route.continue_())
    hold, held = [], []  # while `hold` holds True, a new deployment is held here until the test lets it go
    page.route("**/v1/deployments",
               lambda route: held.append(route) if route.request.method == "POST" and hold else route.continue_())
    try:
        open_page(page, studio, "/models", "#deployments tr[data-deployment=clean-test]")
        # an error under the title, from something else on the page...
        page.click("[data-delete-deployment=clean-test]")
        page.wait_for_selector("#page-alert:not([hidden])")
        assert "The deployment is in use." in page.inner_text("#page-alert")
        # ...is gone when the dialog opens
        page.click("#new-deployment")
        assert not page.is_visible("#page-alert") and page.locator("#deploy-error .alert").count() == 0

        page.fill("#deploy-name", "clean-test")  # the name taken: the server refuses it
        page.click("#deploy-submit")
        page.wait_for_selector("#deploy-error .alert.error")
        assert "already exists" in page.inner_text("#deploy-error")
        # sent again with a free name, the old error goes at once, before the server has answered
        hold.append(True)
        page.fill("#deploy-name", "clean-test-2")
        page.click("#deploy-submit")
        deadline = time.monotonic() + 30
        while not held and time.monotonic() < deadline:
            page.wait_for_timeout(50)
        assert held, "the dialog sent nothing"
        assert page.locator("#deploy-error .alert").count() == 0 and page.is_visible("#deploy-dialog")
        hold.clear()
        held[0].continue_()
        page.wait_for_selector("#deployments tr[data-deployment=clean-test-2]")

        # a dialog opened again starts clean too
        page.click("#new-deployment")
        page.fill("#deploy-name", "clean-test")
        page.click("#deploy-submit")
        page.wait_for_selector("#deploy-error .alert.error")
        page.click("#deploy-cancel")
        page.click("#new-deployment")
        assert page.locator("#deploy-error .alert").count() == 0
        page.click("#deploy-cancel")
        watch.check()
    finally:
        for name in ("clean-test", "clean-test-2"):
            httpx.delete(f"{studio.url}/v1/deployments/{name}", timeout=60)


def test_a_refused_flow_upload_clears_the_preview_it_would_replace(page, studio, watch, tmp_path):
    import httpx

    httpx.post(f"{studio.url}/v1/tunery/flows", json={"gallery": "web-classification"}, timeout=60)  # or it exists
    open_page(page, studio, "/flows/web-classification", "body[data-ready=true]")
    page.click(".flow-tabs [data-tab=batch]")
    page.wait_for_selector("#data-preview table")
    assert page.input_value("#batch-data") and page.is_enabled("#batch-submit")

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"url": "https://example.com"}\n{not json\n', encoding="utf-8")
    page.set_input_files("#batch-upload", str(broken))
    error = page.locator("#data-preview .alert.error")
    error.wait_for()
    # nothing of the data picked before stands in for the refused file: no preview, no pick, no Submit
    assert page.locator("#data-preview table").count() == 0
    assert page.get_attribute("#data-preview", "data-rows") is None
    assert page.input_value("#batch-data") == "" and page.is_disabled("#batch-submit")
    assert "Upload refused (broken.jsonl)" in error.inner_text() and "line 2: not valid JSON" in error.inner_text()
    watch.check()


def _upper_flow(tmp_path, *texts: str):
    """A one-node python flow that upper-cases its text, and a data file of ``texts``."""
    import json

    flow = tmp_path / "upper"
    flow.mkdir()
    (flow / "flow.dag.yaml").write_text(
        "inputs:\n  text:\n    type: string\noutputs:\n  answer:\n    type: string\n    reference: ${up.output}\n"
        "nodes:\n- name: up\n  type: python\n  source: {type: code, path: up.py}\n  inputs:\n    text: ${inputs.text}\n")
    (flow / "up.py").write_text("from promptflow.core import tool\n\n\n@tool\ndef up(text: str) -> str:\n"
                                "    return text.upper()\n")
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return flow, data


def test_runs_page_compares_selected_runs(page, studio, studio_home, watch, shot, tmp_path):
    from tunery.flows import RunSpec, create_run

    flow, data = _upper_flow(tmp_path, "lisbon", "hanoi")
    for name in ("upper_one", "upper_two"):
        create_run(RunSpec(flow=str(flow), data=str(data), name=name))

    open_page(page, studio, "/runs", "#runs[data-state=ready]")
    assert page.is_disabled("#compare-runs")
    page.check("[data-run=upper_one]")
    page.check("[data-run=upper_two]")
    assert page.inner_text("#compare-runs") == "Compare 2 runs"
    page.click("#compare-runs")
    frame = page.frame_locator("#comparison")
    frame.locator("text=LISBON").first.wait_for()
    assert "Run comparison" in frame.locator("h1").inner_text()
    shot(page, "runs", full_page=True)
    watch.check()


def test_a_run_page_keeps_polling_through_a_lost_connection(page, studio, studio_home, watch, tmp_path):
    """A failed poll (the server out of reach, then a 502) is retried with a back-off under a small
    note, which goes once the run answers; the polling stops when the run has ended."""
    from tunery.flows import RunSpec, create_run

    flow, data = _upper_flow(tmp_path, "lisbon")
    create_run(RunSpec(flow=str(flow), data=str(data), name="polled"))

    polls = []

    def flaky(route):
        polls.append(route.request.url)
        if len(polls) == 1:
            return route.abort("connectionrefused")
        if len(polls) == 2:
            return route.fulfill(status=502, content_type="text/html", body="<h1>Bad gateway</h1>")
        return route.continue_()

    page.route("**/v1/tunery/runs/polled", flaky)
    page.goto(f"{studio.url}/runs/polled")
    page.wait_for_selector("#connection-note", state="visible", timeout=5000)
    assert "retrying" in page.inner_text("#connection-note")
    page.wait_for_selector("#run-status[data-status=Completed]", timeout=15_000)
    assert page.is_hidden("#connection-note") and page.is_hidden("#page-alert")
    assert len(polls) == 3
    page.wait_for_timeout(2500)
    assert len(polls) == 3  # the run has ended: nothing more to wait for
    watch.check()


def test_the_models_page_fits_a_laptop_screen(page, studio, studio_home, tiny_model_dir, watch, shot):
    """At 1366 px, with fine-tuned models listed (one tuned from another), no table runs out of its
    card: the fine-tuned models' once ran under the base models' card, its buttons hidden there."""
    from tunery.models import ModelRecord, register, remove

    ids = ["ft:tiny-random:travel:0a1b2c3d", "ft:tiny-random:support-bot:4e5f6a7b"]
    for model_id, parent in zip(ids, ["tiny-random", ids[0]], strict=True):
        register(ModelRecord(id=model_id, kind="fine-tuned", path=tiny_model_dir, source="job", parent=parent,
                             method="full"))
    try:
        page.set_viewport_size({"width": 1366, "height": 768})
        open_page(page, studio, "/models", f"#finetuned tr:has-text('{ids[1]}')")
        page.wait_for_selector("#base table")
        spilled = page.evaluate("""() => [...new Set([...document.querySelectorAll('.card')].flatMap((card) => {
            const edge = card.getBoundingClientRect().right;
            return [...card.querySelectorAll('*')].filter((e) => e.getBoundingClientRect().right > edge + 0.5)
              .map((e) => `${card.querySelector('h2').textContent}: ${e.tagName.toLowerCase()} ${e.className}`);
        }))]""")
        scroll, client = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        shot(page, "models-1366", full_page=True)
        assert spilled == [], f"wider than their card: {spilled}"
        assert scroll <= client, f"the page is {scroll} px wide in a {client} px window"
    finally:
        for model_id in reversed(ids):
            remove(model_id, delete_files=False)
    watch.check()


def test_a_401_asks_for_the_api_key_and_then_sends_it(page, studio, watch):
    sent: list[str | None] = []

    def keyed(route):
        # the module's server has no keys: this route plays one that wants "sk-test"
        auth = route.request.headers.get("authorization")
        sent.append(auth)
        if auth == "Bearer sk-test":
            route.continue_()
        else:
            route.fulfill(status=401, content_type="application/json", body=json.dumps(
                {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error",
                           "param": None, "code": "invalid_api_key"}}))

    page.route(f"{studio.url}/v1/models", keyed)
    page.goto(f"{studio.url}/playground")
    page.wait_for_selector("#api-key-dialog[open]")
    assert "Incorrect API key provided." in page.inner_text("#page-alert")
    page.fill("#api-key-input", "sk-test")
    page.click("#api-key-dialog button[value=save]")
    page.wait_for_selector("#model[data-ready=true]", state="attached")  # the page reloads with the key
    assert sent == [None, "Bearer sk-test"] and page.input_value("#model") == "tiny-random"
    page.click("#view-code")
    assert 'api_key=os.environ["TUNERY_API_KEY"]' in page.inner_text("#code-dialog code")
    watch.check()


NARROW = {"width": 390, "height": 844}


def test_pages_fit_a_narrow_screen(page, studio, watch, shot):
    """At phone width no page is wider than the window: panels stack, tables scroll in their card."""
    import httpx

    httpx.post(f"{studio.url}/v1/tunery/flows", json={"gallery": "web-classification"}, timeout=60)
    # a job, for its page with the charts; measured once it has finished, when its checkpoint table is in
    # (a table of long model ids that once widened the page only then)
    upload = httpx.post(f"{studio.url}/v1/files", data={"purpose": "fine-tune"},
                        files={"file": ("narrow.jsonl", "".join(f"{line}\n" for line in valid_lines(10)).encode())}, timeout=60)
    job = httpx.post(f"{studio.url}/v1/fine_tuning/jobs", json={"model": "tiny-random", "training_file": upload.json()["id"],
                                                               "hyperparameters": {"n_epochs": 1}}, timeout=60).json()
    page.set_viewport_size(NARROW)
    # each page's content is in before it is measured: an empty page would fit any window
    pages = {"/playground": "#model[data-ready=true]", "/compare": "#questions button",
             "/fine-tune": "#base-model[data-ready=true]", "/jobs": "#jobs[data-state=ready]",
             f"/jobs/{job['id']}": "#job[data-status=succeeded] #checkpoints table", "/data": "#files[data-state=ready]", "/models": "#base table",
             "/runs": "#runs[data-state=ready]", "/flows/web-classification": "body[data-ready=true]",
             "/nope": "#not-found"}
    wide = {}
    for path, ready in pages.items():
        open_page(page, studio, path, ready)
        page.wait_for_timeout(1000)  # the rest fills in (some pages keep polling, so never "network idle")
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > NARROW["width"]:
            wide[path] = width
        shot(page, f"narrow{path.replace('/', '-')}", full_page=True)
    assert wide == {}, f"wider than the {NARROW['width']} px window: {wide}"
