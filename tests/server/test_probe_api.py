"""What a demanding user of the official openai SDK sends, answered as OpenAI answers it."""

from __future__ import annotations

import json
import socket
import time

import openai
import pytest

MSG = [{"role": "user", "content": "Hello! Where should I travel in spring?"}]


def test_null_n_and_stream_mean_their_defaults(client, tiny_model):
    # the SDK sends an explicit None as null: OpenAI reads n null as 1 and stream null as not streamed
    kw = dict(model="tiny-random", messages=MSG, max_tokens=4, seed=3)
    r = client.chat.completions.create(**kw, n=None, stream=None)
    assert r.object == "chat.completion" and len(r.choices) == 1
    assert r.choices[0].message.content == client.chat.completions.create(**kw).choices[0].message.content


def test_deleting_a_deployment_as_a_model_names_the_deployment_route(client, http, tiny_model):
    assert http.post("/v1/deployments", json={"name": "travel", "model": "tiny-random"}).status_code == 200
    assert client.models.retrieve("travel").id == "travel"  # listed and retrieved as a model ...
    with pytest.raises(openai.BadRequestError) as e:  # ... so deleting it is not "does not exist"
        client.models.delete("travel")
    assert e.value.param == "model" and "is a deployment" in e.value.message
    assert "DELETE /v1/deployments/travel" in e.value.message
    assert client.models.retrieve("travel").id == "travel"


def test_a_plain_answer_stops_when_its_client_hangs_up(server, tiny_model):
    # an SDK that times out hangs up (and asks again): the answer it left must not run to the end
    from tunery.serving.manager import manager

    engine = manager().target("tiny-random").engine
    before = engine.tokens_generated
    body = json.dumps(
        {"model": "tiny-random", "messages": MSG, "max_tokens": 900, "n": 16, "ignore_eos": True}
    ).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    deadline = time.monotonic() + 60
    with socket.create_connection((server.host, server.port)) as conn:
        conn.sendall(head + body)
        while not engine.busy():
            assert time.monotonic() < deadline
            time.sleep(0.01)
    while engine.busy() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not engine.busy()
    assert engine.tokens_generated - before < 16 * 900  # cancelled, not run to max_tokens
