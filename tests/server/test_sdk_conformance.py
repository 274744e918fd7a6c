"""The openai SDK's own expectations, beyond the shapes the other server tests check: what its
retry logic does with our errors, what its stream helpers build from our chunks, and how its
auto-paging iterators walk our lists."""

from __future__ import annotations

import httpx
import openai
import pytest
from test_tools_api import ASK, WEATHER


@pytest.fixture
def file_id(client, chat_file) -> str:
    return client.files.create(file=chat_file(12).open("rb"), purpose="fine-tune").id


def test_a_conflict_is_sent_once_not_retried_by_the_sdk(server, tiny_model, file_id):
    sent: list[str] = []
    with httpx.Client(event_hooks={"request": [lambda r: sent.append(r.url.path)]}) as http:
        # the SDK's defaults: it retries a 409 twice (OpenAI's lock timeouts), unless told not to
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", http_client=http)
        job = client.fine_tuning.jobs.create(model="tiny-random", training_file=file_id)
        client.fine_tuning.jobs.cancel(job.id)
        sent.clear()
        with pytest.raises(openai.ConflictError) as e:
            client.fine_tuning.jobs.cancel(job.id)
    assert sent == [f"/v1/fine_tuning/jobs/{job.id}/cancel"]
    assert e.value.code == "job_not_cancellable" and e.value.param == "fine_tuning_job_id"
    assert e.value.response.headers["x-should-retry"] == "false"


@pytest.mark.parametrize(("tool_choice", "max_tokens"), [
    ({"type": "function", "function": {"name": "get_weather"}}, 80),  # a call
    ("required", 8),  # a call cut by max_tokens: no content, no call
])
def test_a_streamed_tool_answer_is_the_plain_one_in_the_sdk_helper(client, tiny_model, tool_choice, max_tokens):
    kw = dict(model="tiny-random", messages=ASK, tools=[WEATHER], tool_choice=tool_choice, max_tokens=max_tokens,
              seed=2, temperature=1.2)
    plain = client.chat.completions.create(**kw).choices[0]
    with client.chat.completions.stream(**kw) as stream:
        events = list(stream)
        streamed = stream.current_completion_snapshot.choices[0]
    assert plain.message.content is None and streamed.message.content is None
    assert "content.delta" not in [e.type for e in events]
    assert streamed.finish_reason == plain.finish_reason
    assert ([(c.function.name, c.function.arguments) for c in streamed.message.tool_calls or ()]
            == [(c.function.name, c.function.arguments) for c in plain.message.tool_calls or ()])


def test_each_streamed_choice_names_its_role_once_with_or_without_tools(client, tiny_model):
    for extra in ({}, {"tools": [WEATHER], "tool_choice": "required"}):
        kw = dict(model="tiny-random", messages=ASK, n=2, max_tokens=60, seed=3, **extra)
        plain = client.chat.completions.create(**kw)
        chunks = list(client.chat.completions.create(**kw, stream=True))
        roles = [(c.choices[0].index, c.choices[0].delta.role) for c in chunks if c.choices[0].delta.role]
        assert sorted(roles) == [(0, "assistant"), (1, "assistant")]
        for i in (0, 1):
            first = next(c.choices[0].delta for c in chunks if c.choices[0].index == i)
            assert first.role == "assistant"
            assert (first.content is None) == (plain.choices[i].message.content is None)


def test_the_sdk_pages_through_jobs_events_and_files(client, tiny_model, file_id):
    jobs = [client.fine_tuning.jobs.create(model="tiny-random", training_file=file_id) for _ in range(3)]
    page = client.fine_tuning.jobs.list(limit=2)
    assert page.has_more and [j.id for j in page.data] == [j.id for j in jobs[::-1][:2]]
    assert [j.id for j in client.fine_tuning.jobs.list(limit=1)] == [j.id for j in jobs[::-1]]
    events = client.fine_tuning.jobs.list_events(jobs[0].id, limit=1)
    assert events.has_more and len(events.data) == 1
    assert len(list(client.fine_tuning.jobs.list_events(jobs[0].id, limit=1))) == len(
        client.fine_tuning.jobs.list_events(jobs[0].id, limit=100).data) >= 2
    empty = client.fine_tuning.jobs.checkpoints.list(jobs[0].id)
    assert empty.data == [] and not empty.has_more and list(empty) == []
    assert [f.id for f in client.files.list(limit=1, purpose="fine-tune")] == [file_id]


def test_responses_carry_a_request_id_and_unknown_models_their_code(client, tiny_model):
    import openai

    raw = client.models.with_raw_response.list()
    assert raw.request_id and raw.request_id.startswith("req_")
    assert client.models.with_raw_response.list().request_id != raw.request_id
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert e.value.code == "model_not_found" and e.value.param == "model" and e.value.request_id.startswith("req_")
