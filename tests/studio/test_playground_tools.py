"""The playground's functions and response format in headless Chromium: define a function, get a
call from the tiny model, answer it as the tool, and get the model's next answer; ask for JSON
that fits a schema and get it, see the format in View code, and see the server's refusal of a
schema at the control."""

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


SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 8}}, "required": ["city"],
          "additionalProperties": False}


def choose_schema(page, name: str, schema: str) -> None:
    if not page.locator("#format-box[open]").count():
        page.click("#format-box summary")
    page.select_option("#response-format", "json_schema")
    page.fill("#schema-name", name)
    page.fill("#schema", schema)


def test_playground_answers_in_json_that_fits_the_schema(page, studio, watch):
    page.goto(f"{studio.url}/playground")
    page.wait_for_selector("#model[data-ready=true]", state="attached")
    page.click("#format-box summary")
    page.select_option("#response-format", "json_object")
    assert page.inner_text("#format-state") == "The answer is one JSON object." and page.is_hidden("#schema-fields")
    choose_schema(page, "city_pick", json.dumps(SCHEMA))
    assert page.inner_text("#format-state") == "The answer is JSON that fits city_pick."
    assert page.inner_text("#format-box summary").endswith("json_schema")
    page.fill("#pg-max_tokens", "64")
    page.press("#pg-max_tokens", "Tab")
    page.fill("#prompt", "Pick a city.")

    # View code sends the same format
    page.click("#view-code")
    code = page.locator("#code-dialog code")
    expected = {"type": "json_schema", "json_schema": {"name": "city_pick", "schema": SCHEMA}}
    assert 'response_format={"type": "json_schema", "json_schema": {"name": "city_pick", "schema": {' in code.inner_text()
    assert '"additionalProperties": False' in code.inner_text()  # as Python writes it
    page.click("#code-dialog [data-tab=curl]")
    body = json.loads(code.inner_text().split("-d '", 1)[1].rsplit("'", 1)[0])
    assert body["response_format"] == expected
    page.click("#code-dialog [aria-label=Close]")

    page.press("#prompt", "Enter")
    # the first answer may wait for the int8 copy of the model to be built
    page.wait_for_selector(DONE, timeout=180_000)
    answer = json.loads(page.locator(".msg.assistant .bubble").first.inner_text())
    assert set(answer) == {"city"} and isinstance(answer["city"], str) and len(answer["city"]) <= 8
    watch.check()


def test_a_schema_the_server_refuses_is_shown_at_the_control(page, studio, watch):
    page.goto(f"{studio.url}/playground")
    page.wait_for_selector("#model[data-ready=true]", state="attached")
    # not JSON at all: said as it is typed, and nothing is sent
    choose_schema(page, "broken", '{"type": "object",')
    assert page.inner_text("#format-state").startswith("Not valid:")
    page.fill("#prompt", "Pick a city.")
    page.press("#prompt", "Enter")
    assert "response format is not valid" in page.inner_text("#page-alert")
    assert page.locator(".msg").count() == 0

    # JSON, but no JSON schema: the server's 400 shows at the control, naming the parameter
    page.fill("#schema", json.dumps({"type": "object", "properties": {"city": {"type": "strin"}}}))
    page.fill("#prompt", "Pick a city.")
    page.press("#prompt", "Enter")
    problem = page.locator("#format-error")
    problem.wait_for(timeout=180_000)
    assert "not a valid JSON schema" in problem.inner_text()
    assert "response_format.json_schema.schema" in problem.inner_text()
    assert page.get_attribute("#schema", "aria-invalid") == "true"
    assert page.locator(".msg.assistant[data-state=error]").count() == 1
    # editing the schema takes the old error away
    page.fill("#schema", json.dumps(SCHEMA))
    assert page.is_hidden("#format-error") and page.get_attribute("#schema", "aria-invalid") is None
    watch.check()
