"""An evaluation over rows that carry ``tools``: each request is sent with its row's tools, the
tool-call evaluator scores the calls, and a row with unusable tools is refused before any answer."""

from __future__ import annotations

import json

import pytest

from tunery.chat_template import tool_call_text
from tunery.errors import InvalidInput
from tunery.evals import run_eval
from tunery.evals.tool_calls import ToolCalls
from tunery.serving.clients import ScriptedChatModel

TOOLS = [{"type": "function", "function": {
    "name": "get_local_time", "description": "Current local time in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
ROWS = [{"question": "What time is it in Lima?", "tools": TOOLS,
         "expect": {"tool_calls": [{"name": "get_local_time", "arguments": {"city": "Lima"}}]}},
        {"question": "Any tips for jet lag?", "tools": TOOLS, "expect": "no_tool"},
        {"question": "And in Seoul?", "expect": {"tool_calls": [{"name": "get_local_time", "arguments": {"city": "Seoul"}}]}}]


def reply(messages) -> str:
    """Calls the time tool for a question naming Lima or Seoul, else answers in words."""
    q = messages[-1].content
    city = next((c for c in ("Lima", "Seoul") if c in q), None)
    if city is None:
        return "Sleep on the local schedule."
    return tool_call_text([{"id": "c1", "type": "function",
                            "function": {"name": "get_local_time", "arguments": json.dumps({"city": city})}}])


def test_each_row_is_asked_with_its_own_tools_and_scored(tunery_home):
    model = ScriptedChatModel(name="m", reply=reply)
    report = run_eval(ROWS, {"m": model}, [ToolCalls()], system="You are Wayfarer.", write=False)
    sent = [params.tools for _, params in model.calls]
    assert sent == [tuple(TOOLS), tuple(TOOLS), ()]  # the row without tools is asked without any
    assert all(params.temperature == 0.0 for _, params in model.calls)
    assert [r["scores"]["tool_calls"]["passed"] for r in report.rows] == [True, True, True]
    assert report.summary["m"]["tool_calls"]["pass_rate"] == 1.0


@pytest.mark.parametrize(("tools", "words"), [
    ("get_local_time", "must be a non-empty list of function specs"),
    ([], "must be a non-empty list of function specs"),
    ([{"type": "function", "function": {"name": "bad name!", "parameters": {"type": "object"}}}], "tools[0]"),
])
def test_a_row_with_unusable_tools_is_refused_before_any_answer(tunery_home, tools, words):
    model = ScriptedChatModel(name="m", reply=reply)
    rows = [ROWS[0], {**ROWS[1], "tools": tools}]
    with pytest.raises(InvalidInput) as e:
        run_eval(rows, {"m": model}, [ToolCalls()], write=False)
    assert e.value.message.startswith("row 2: ") and words in e.value.message and e.value.param == "data"
    assert model.calls == []
