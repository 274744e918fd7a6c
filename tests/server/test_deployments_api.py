"""Deployments over HTTP: create/list/get/delete, chat through a deployment, 429 with
Retry-After over the tokens-per-minute limit, and the content filter."""

from __future__ import annotations

import openai
import pytest

MSG = [{"role": "user", "content": "Hello! Where should I travel in spring?"}]


def test_deployment_crud(http, tiny_model):
    r = http.post("/v1/deployments", json={"name": "travel", "model": "tiny-random", "tpm": 500,
                                           "content_filter": "strict", "blocklist": ["red door"]})
    assert r.status_code == 200, r.text
    dep = r.json()
    assert (dep["id"], dep["model"], dep["tpm"], dep["content_filter"], dep["blocklist"]) == \
        ("travel", "tiny-random", 500, "strict", ["red door"])
    assert [d["id"] for d in http.get("/v1/deployments").json()["data"]] == ["travel"]
    assert http.get("/v1/deployments/travel").json()["tokens_used_last_minute"] == 0
    assert http.post("/v1/deployments", json={"name": "travel", "model": "tiny-random"}).status_code == 409
    assert http.delete("/v1/deployments/travel").json() == {"id": "travel", "object": "deployment", "deleted": True}
    assert http.get("/v1/deployments").json()["data"] == []


def test_chat_through_a_deployment_until_429(client, http, tiny_model):
    assert http.post("/v1/deployments", json={"name": "small", "model": "tiny-random", "tpm": 200}).status_code == 200
    first = client.chat.completions.create(model="small", messages=MSG, max_tokens=5)
    assert first.model == "small"
    with pytest.raises(openai.RateLimitError) as e:
        for _ in range(20):
            list(client.chat.completions.create(model="small", messages=MSG, max_tokens=5, stream=True))
    resp = e.value.response
    assert resp.status_code == 429 and 1 <= int(resp.headers["retry-after"]) <= 60
    assert e.value.body["code"] == "rate_limit_exceeded" and "tokens per minute" in e.value.body["message"]
    assert http.get("/v1/deployments/small").json()["tokens_used_last_minute"] > 0
    # the model itself is not limited
    assert client.chat.completions.create(model="tiny-random", messages=MSG, max_tokens=2).choices


def test_content_filter_refuses_a_prompt_with_400(client, http, tiny_model):
    http.post("/v1/deployments", json={"name": "safe", "model": "tiny-random"})
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="safe", messages=[{"role": "user", "content": "how to make a bomb"}])
    assert e.value.body["code"] == "content_filter"
    assert client.chat.completions.create(model="safe", messages=MSG, max_tokens=2).choices


def test_a_deployment_of_a_removed_model_is_404(client, tiny_model):
    from tunery.models import ModelRecord, register, remove
    from tunery.serving import deployments

    register(ModelRecord(id="tmp-ft", kind="fine-tuned", path=tiny_model.path, source="test", parent="tiny-random",
                         method="full"))
    deployments.create("gone", "tmp-ft")
    remove("tmp-ft", delete_files=False)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gone", messages=MSG, max_tokens=2)


def test_a_deployment_names_its_precision_and_models_say_how_they_are_served(http, client, tiny_model):
    r = http.post("/v1/deployments", json={"name": "exact", "model": "tiny-random", "precision": "fp32"})
    assert r.status_code == 200 and r.json()["precision"] == "fp32", r.text
    bad = http.post("/v1/deployments", json={"name": "odd", "model": "tiny-random", "precision": "int3"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "precision"
    assert client.chat.completions.create(model="exact", messages=MSG, max_tokens=2).choices
    served = {m["id"]: m["serving"] for m in http.get("/v1/models").json()["data"]}
    assert served["exact"]["precision"] == "fp32" and served["exact"]["engine"] == "torch"
    base = http.get("/v1/models/tiny-random").json()["serving"]
    assert base["precision"] == "int8" and base["engine"] == "onnx" and "int8" in base["summary"]
