"""Bad input on every route gets the right status and an OpenAI error object, never a 500."""

from __future__ import annotations

import pytest

CHAT = "/v1/chat/completions"
OK_MSG = [{"role": "user", "content": "hi"}]


def assert_error(r, status: int, param: str | None = "any", code: str | None = "any") -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if param != "any":
        assert err["param"] == param
    if code != "any":
        assert err["code"] == code
    return err


@pytest.mark.parametrize("body,param", [
    ("{not json", None),
    ("[1, 2]", "any"),
    ('{"messages": [{"role": "user", "content": "hi"}]}', "model"),
    ('{"model": "tiny-random"}', "messages"),
    ('{"model": "tiny-random", "messages": []}', "messages"),
    ('{"model": "tiny-random", "messages": "hi"}', "messages"),
    ('{"model": "tiny-random", "messages": [{"role": "wizard", "content": "hi"}]}', "messages[0].role"),
    ('{"model": "tiny-random", "messages": [{"role": "user", "content": 5}]}', "messages[0].content"),
    ('{"model": "tiny-random", "messages": [{"role": "user"}]}', "messages[0].content"),
    ('{"model": "tiny-random", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}',
     "messages[0].content[0].type"),
    ('{"model": "tiny-random", "messages": [{"role": "tool", "content": "x"}]}', "messages[0].role"),
    ('{"model": 7, "messages": [{"role": "user", "content": "hi"}]}', "model"),
    ('{"model": "tiny-random", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}', "temperature"),
    ('{"model": "tiny-random", "messages": [{"role": "user", "content": "hi"}], "temperature": 3}', "temperature"),
    ('{"model": "tiny-random", "messages": [{"role": "user", "content": "hi"}], "top_p": -1}', "top_p"),
    ('{"model": "tiny-random", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}', "max_tokens"),
    ('{"model": "tiny-random", "messages": [{"role": "user", "content": "hi"}], "max_tokens": "5"}', "max_tokens"),
    ('{"model": "tiny-random", "messages": [{"role": "user", "content": "hi"}], "n": 0}', "n"),
    ('{"model": "tiny-random", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}', "stream"),
    ('{"model": "tiny-random", "messages": [{"role": "user", "content": "hi"}], "stop": 5}', "stop"),
    ('{"model": "tiny-random", "messages": [{"role": "user", "content": "hi"}], "stop": ["a","b","c","d","e"]}', "stop"),
    ('{"model": "tiny-random", "messages": [{"role": "user", "content": "hi"}], "seed": 1.5}', "seed"),
    ('{"model": "tiny-random", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}', "tools"),
    ('{"model": "tiny-random", "messages": [{"role": "user", "content": "hi"}], "logprobs": "yes"}', "logprobs"),
    ('{"model": "tiny-random", "messages": [{"role": "user", "content": "hi"}], "top_logprobs": 21}', "top_logprobs"),
])
def test_chat_bad_bodies_are_400(http, tiny_model, body, param):
    r = http.post(CHAT, content=body, headers={"content-type": "application/json"})
    assert_error(r, 400, param=param)


@pytest.mark.parametrize("extra,param,words", [
    ({"presence_penalty": 5}, "presence_penalty", "less than or equal to 2"),
    ({"frequency_penalty": -3}, "frequency_penalty", "greater than or equal to -2"),
    ({"logit_bias": {"5": 100.5}}, "logit_bias", "between -100 and 100"),
    ({"logit_bias": {"5": -101}}, "logit_bias", "between -100 and 100"),
    ({"logit_bias": {"abc": 1}}, "logit_bias", "token ids written as strings"),
    ({"logit_bias": {"-1": 1}}, "logit_bias", "token ids written as strings"),
    ({"logit_bias": {"1.5": 1}}, "logit_bias", "token ids written as strings"),
    ({"logit_bias": {"5": 1, "99999999": 1}}, "logit_bias", "past this model's vocabulary"),
    ({"top_logprobs": 2}, "top_logprobs", "top_logprobs requires logprobs to be true"),
    ({"modalities": ["audio"]}, "modalities", '["audio"] are not supported'),
    ({"modalities": ["text", "audio"]}, "modalities", "text only"),
])
def test_bad_or_unsupported_sampling_parameters_are_refused(http, tiny_model, extra, param, words):
    err = assert_error(http.post(CHAT, json={"model": "tiny-random", "messages": OK_MSG, **extra}), 400, param=param)
    assert words in err["message"]


def test_the_defaults_sdks_send_unasked_are_accepted(http, tiny_model):
    defaults = {"presence_penalty": 0, "frequency_penalty": 0.0, "logit_bias": {}, "top_logprobs": 0,
                "logprobs": False, "modalities": ["text"]}
    r = http.post(CHAT, json={"model": "tiny-random", "messages": OK_MSG, "max_tokens": 1, **defaults})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("field", ["temperature", "top_p", "presence_penalty"])
@pytest.mark.parametrize("value", ["NaN", "Infinity"])
def test_a_sampling_number_must_be_finite(http, tiny_model, field, value):
    body = f'{{"model": "tiny-random", "messages": [{{"role": "user", "content": "hi"}}], "{field}": {value}}}'
    err = assert_error(http.post(CHAT, content=body, headers={"content-type": "application/json"}), 400, param=field)
    assert "finite number" in err["message"]


def test_a_text_part_without_text_says_text_is_required(http, tiny_model):
    msg = [{"role": "user", "content": [{"type": "text"}]}]
    err = assert_error(http.post(CHAT, json={"model": "tiny-random", "messages": msg}), 400,
                       param="messages[0].content[0].text")
    assert "needs its text" in err["message"] and "only text parts" not in err["message"]


def test_a_tool_message_without_tool_call_id_says_it_is_required(http, tiny_model):
    msgs = [*OK_MSG, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "content": "sunny"}]
    err = assert_error(http.post(CHAT, json={"model": "tiny-random", "messages": msgs}), 400,
                       param="messages[2].tool_call_id")
    assert "tool_call_id is required" in err["message"] and "None" not in err["message"]


@pytest.mark.parametrize("content,content_type,words", [
    (b'{"model": "tiny-random", "messages": []}', "text/plain", "must be JSON"),
    (b'{"model": "tiny-random", "messages": []}', None, "must be JSON"),
    (b'{"model": "tiny-random\xff"}', "application/json", "not UTF-8 text"),
    (b"[" * 5000 + b"]" * 5000, "application/json", "nested too deeply"),
    (b'{"model": "tiny-random", "seed": ' + b"9" * 5000 + b"}", "application/json", "a number is too long"),
    (b"{not json", "application/json", "Expecting property name"),
])
def test_a_body_that_is_not_json_is_invalid_json(http, tiny_model, content, content_type, words):
    headers = {"content-type": content_type} if content_type else {}
    req = http.build_request("POST", CHAT, content=content, headers=headers)
    if content_type is None:
        req.headers.pop("content-type", None)
    err = assert_error(http.send(req), 400, param=None, code="invalid_json")
    assert words in err["message"], err["message"]


def test_chat_unknown_model_is_404(http, tiny_model):
    assert_error(http.post(CHAT, json={"model": "nope", "messages": OK_MSG}), 404, param="model")


def test_chat_prompt_over_the_context_is_400(http, tiny_model):
    long = [{"role": "user", "content": "Rome Paris Lisbon " * 600}]
    assert_error(http.post(CHAT, json={"model": "tiny-random", "messages": long}), 400, param="messages",
                 code="context_length_exceeded")
    r = http.post(CHAT, json={"model": "tiny-random", "messages": long, "stream": True})
    assert_error(r, 400, code="context_length_exceeded")  # before the stream starts


def test_unknown_route_and_method(http):
    assert_error(http.get("/v1/nothing-here"), 404, code="unknown_url")
    assert_error(http.delete("/v1/chat/completions"), 405)


@pytest.mark.parametrize("method,path,kwargs,status,param", [
    ("get", "/v1/models/no-such-model", {}, 404, "model"),
    ("delete", "/v1/models/no-such-model", {}, 404, "model"),
    ("delete", "/v1/models/tiny-random", {}, 400, "model"),
    ("get", "/v1/files/file-nope", {}, 404, "file_id"),
    ("get", "/v1/files/file-nope/content", {}, 404, "file_id"),
    ("delete", "/v1/files/file-nope", {}, 404, "file_id"),
    ("get", "/v1/files?limit=0", {}, 400, "limit"),
    ("get", "/v1/files?limit=abc", {}, 400, "limit"),
    ("get", "/v1/files?order=sideways", {}, 400, "order"),
    ("post", "/v1/files", {"json": {"purpose": "fine-tune"}}, 400, "file"),
    ("post", "/v1/files", {"files": {"file": ("a.jsonl", b"{}\n")}}, 400, "purpose"),
    ("post", "/v1/files", {"data": {"purpose": "fine-tune"}, "files": {"other": ("a.jsonl", b"{}\n")}}, 400, "file"),
    ("post", "/v1/files", {"data": {"purpose": "homework"}, "files": {"file": ("a.jsonl", b"{}\n")}}, 400, "purpose"),
    ("post", "/v1/files", {"data": {"purpose": "fine-tune"}, "files": {"file": ("a.jsonl", b"")}}, 400, "file"),
    ("post", "/v1/fine_tuning/jobs", {"content": "{oops"}, 400, None),
    ("post", "/v1/fine_tuning/jobs", {"json": {"training_file": "file-x"}}, 400, "model"),
    ("post", "/v1/fine_tuning/jobs", {"json": {"model": "tiny-random"}}, 400, "training_file"),
    ("post", "/v1/fine_tuning/jobs", {"json": {"model": "tiny-random", "training_file": 3}}, 400, "training_file"),
    ("post", "/v1/fine_tuning/jobs", {"json": {"model": "tiny-random", "training_file": "file-nope"}}, 400,
     "training_file"),
    ("post", "/v1/fine_tuning/jobs", {"json": {"model": "no-such", "training_file": "file-nope"}}, 400, "model"),
    ("post", "/v1/fine_tuning/jobs", {"json": {"model": "tiny-random", "training_file": "f",
                                               "hyperparameters": [1]}}, 400, "hyperparameters"),
    ("post", "/v1/fine_tuning/jobs", {"json": {"model": "tiny-random", "training_file": "f", "seed": "x"}}, 400,
     "seed"),
    ("get", "/v1/fine_tuning/jobs?limit=1000", {}, 400, "limit"),
    ("get", "/v1/fine_tuning/jobs/ftjob-nope", {}, 404, "any"),
    ("post", "/v1/fine_tuning/jobs/ftjob-nope/cancel", {}, 404, "any"),
    ("get", "/v1/fine_tuning/jobs/ftjob-nope/events", {}, 404, "any"),
    ("get", "/v1/fine_tuning/jobs/ftjob-nope/checkpoints", {}, 404, "any"),
    ("post", "/v1/deployments", {"json": {"name": "d1"}}, 400, "model"),
    ("post", "/v1/deployments", {"json": {"name": "d1", "model": "nope"}}, 404, "model"),
    ("post", "/v1/deployments", {"json": {"name": "d1", "model": "tiny-random", "tpm": -5}}, 400, "tpm"),
    ("post", "/v1/deployments", {"json": {"name": "d1", "model": "tiny-random", "tpm": "lots"}}, 400, "tpm"),
    ("post", "/v1/deployments", {"json": {"name": "d1", "model": "tiny-random", "content_filter": "max"}}, 400,
     "content_filter"),
    ("post", "/v1/deployments", {"json": {"name": "bad name", "model": "tiny-random"}}, 400, "name"),
    ("post", "/v1/deployments", {"json": {"name": "d1", "model": "tiny-random", "colour": "red"}}, 400, "colour"),
    ("post", "/v1/deployments", {"json": {"name": "tiny-random", "model": "tiny-random"}}, 409, "name"),
    ("get", "/v1/deployments/nope", {}, 404, "name"),
    ("delete", "/v1/deployments/nope", {}, 404, "name"),
])
def test_bad_input_on_every_route(http, tiny_model, method, path, kwargs, status, param):
    assert_error(http.request(method.upper(), path, **kwargs), status, param=param)


def test_oversized_upload_is_413(http, monkeypatch):
    from tunery.data import files

    monkeypatch.setattr(files, "MAX_FILE_BYTES", 1000)
    r = http.post("/v1/files", data={"purpose": "fine-tune"}, files={"file": ("big.jsonl", b"x" * 5000)})
    assert_error(r, 413, param="file", code="file_too_large")
    r = http.post("/v1/files", data={"purpose": "fine-tune"}, files={"file": ("big.jsonl", b"x" * (3 << 20))})
    assert_error(r, 413, param="file", code="file_too_large")  # refused on Content-Length alone
    assert files.list_files() == []


def test_a_500_is_an_error_object_and_keeps_the_connection(server, monkeypatch, caplog):
    """uvicorn closes a keep-alive connection when an exception reaches it; the 500 must not."""
    import httpx

    from tunery.data import files

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(files, "list_files", broken)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        r = c.get("/v1/files")
        err = assert_error(r, 500, param=None, code=None)
        request_id = r.headers["x-request-id"]  # the log line of the bug names it too
        assert err == {"message": "The server had an error while processing your request (RuntimeError); "
                                  f"it is logged as {request_id}.", "type": "server_error", "param": None,
                       "code": None}
        # a connection the server closed has no socket left: this raises OSError then
        first = r.extensions["network_stream"].get_extra_info("client_addr")
        for _ in range(2):
            r = c.get("/health")
            assert r.status_code == 200
            assert r.extensions["network_stream"].get_extra_info("client_addr") == first  # the same connection
    assert [rec.getMessage() for rec in caplog.records if rec.name == "tunery.server"] == \
        [f"unhandled error on GET /v1/files ({request_id})"]  # logged once, by tunery, not again by uvicorn
    assert not [rec for rec in caplog.records if rec.name.startswith("uvicorn.error")]


def test_a_home_that_cannot_be_written_is_named_not_a_500(http, tunery_home, monkeypatch):
    import errno
    import tempfile

    def denied(*_a, **_k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    r = http.post("/v1/files", data={"purpose": "fine-tune"}, files={"file": ("t.jsonl", b'{"a": 1}\n')})
    err = assert_error(r, 503, code="storage_unavailable")
    assert err["message"].startswith("the server cannot save this: cannot write ") and "cannot be written" in err["message"]
