"""The playground's functions in headless Chromium: define a function, get a call from the tiny
model, answer it as the tool, and get the model's next answer."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.browser

DONE = ".msg.assistant[data-state=done]"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string", "maxLength": 6}, "days": {"enum": [1, 2, 3]}},
    "required": ["city", "days"], "additionalProperties": False}}}]


def test_playground_calls_a_function_and_takes_its_result(page, studio, watch):
    page.goto(f"{studio.url}/playground")
    page.wait_for_selector("#model[data-ready=true]", state="attached")
    page.click("#tools-box summary")
    page.fill("#tools", "[not json")
    assert "Not valid" in page.inner_text("#tools-state")
    page.fill("#tools", json.dumps(TOOLS))
    assert page.inner_text("#tools-state") == "1 function: get_weather"
    page.select_option("#tool-choice", "required")
    page.fill("#pg-max_tokens", "80")
    page.press("#pg-max_tokens", "Tab")
    page.fill("#prompt", "Weather in Rome?")
    page.press("#prompt", "Enter")

    # the first answer may wait for the int8 copy of the model to be built
    page.wait_for_selector(".tool-call", timeout=180_000)
    call = page.locator(".tool-call").first
    assert call.locator(".who").inner_text() == "Calls get_weather"
    args = json.loads(call.locator("pre").inner_text())
    assert set(args) == {"city", "days"} and args["days"] in (1, 2, 3) and len(args["city"]) <= 6
    assert "empty answer" not in page.locator(".msg.assistant").first.inner_text()

    page.select_option("#tool-choice", "auto")
    page.fill("#pg-max_tokens", "12")
    page.press("#pg-max_tokens", "Tab")
    page.click(".tool-calls button")  # nothing typed yet: the call is not sent
    assert page.locator(".msg.assistant").count() == 1
    call.locator("textarea").fill('{"forecast": "sunny"}')
    page.click(".tool-calls button")
    page.wait_for_function(f"document.querySelectorAll('{DONE}').length === 2", timeout=60_000)
    assert page.locator(".msg.assistant").nth(1).locator(".bubble").inner_text().strip()
    assert call.locator("textarea").is_disabled()
    watch.check()


def test_view_code_sends_the_tools_too(page, studio, watch):
    page.goto(f"{studio.url}/playground")
    page.wait_for_selector("#model[data-ready=true]", state="attached")
    page.click("#tools-box summary")
    page.fill("#tools", json.dumps(TOOLS))
    page.select_option("#tool-choice", "required")
    page.fill("#prompt", "Weather in Rome?")
    page.click("#view-code")
    code = page.locator("#code-dialog code")
    python = code.inner_text()
    assert "tools=[" in python and '"name": "get_weather"' in python and 'tool_choice="required"' in python
    page.click("#code-dialog [data-tab=curl]")
    body = json.loads(code.inner_text().split("-d '", 1)[1].rsplit("'", 1)[0])
    assert body["tools"] == TOOLS and body["tool_choice"] == "required"
    watch.check()
