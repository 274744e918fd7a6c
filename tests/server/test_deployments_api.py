"""Deployments over HTTP: create/list/get/delete, chat through a deployment, 429 with
Retry-After over the tokens-per-minute or requests-per-minute limit, and the content filter."""

from __future__ import annotations

import openai
import pytest

MSG = [{"role": "user", "content": "Hello! Where should I travel in spring?"}]


def test_a_requests_per_minute_limit_refuses_the_next_request_with_429(client, http, tiny_model):
    """Requests are counted whatever their size, beside or without a token limit; PATCH and the
    CLI set and lift it."""
    from click.testing import CliRunner

    from tunery.cli.main import cli

    r = CliRunner().invoke(cli, ["deploy", "tiny-random", "--name", "paced", "--rpm", "2"])
    assert r.exit_code == 0 and "2 requests/minute" in r.output, r.output
    for _ in range(2):
        assert client.chat.completions.create(model="paced", messages=MSG, max_tokens=2).choices
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="paced", messages=MSG, max_tokens=2)
    assert "2 requests per minute" in e.value.body["message"] and int(e.value.response.headers["retry-after"]) >= 1
    dep = http.get("/v1/deployments/paced").json()
    assert (dep["rpm"], dep["tpm"], dep["requests_last_minute"], dep["tokens_used_last_minute"]) == (2, None, 2, None)
    assert http.patch("/v1/deployments/paced", json={"rpm": 0}).status_code == 400
    assert http.patch("/v1/deployments/paced", json={"rpm": 3}).json()["rpm"] == 3
    assert client.chat.completions.create(model="paced", messages=MSG, max_tokens=2).choices  # the new limit
    r = CliRunner().invoke(cli, ["deployments", "update", "paced", "--no-rpm"])
    assert r.exit_code == 0 and "no rate limit" in r.output, r.output
    assert client.chat.completions.create(model="paced", messages=MSG, max_tokens=2).choices
    assert http.get("/v1/deployments/paced").json()["requests_last_minute"] is None
    r = CliRunner().invoke(cli, ["deployments", "update", "paced", "--rpm", "4", "--no-rpm"])
    assert r.exit_code == 2 and "--rpm N or --no-rpm" in r.output


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


def test_a_deployment_is_updated_in_place_and_a_running_server_applies_it(client, http, tiny_model):
    """PATCH changes what it names and keeps the rest; the next request obeys it; bad values are
    400s naming the field; the CLI does the same."""
    from click.testing import CliRunner

    from tunery.cli.main import cli

    assert http.post("/v1/deployments", json={"name": "travel", "model": "tiny-random", "tpm": 5000,
                                              "blocklist": ["red door"]}).status_code == 200
    r = http.patch("/v1/deployments/travel", json={"tpm": 200, "content_filter": "strict"})
    assert r.status_code == 200, r.text
    dep = r.json()
    assert (dep["model"], dep["tpm"], dep["content_filter"], dep["blocklist"]) == ("tiny-random", 200, "strict",
                                                                                  ["red door"])
    with pytest.raises(openai.RateLimitError):  # the new limit holds at once
        for _ in range(20):
            client.chat.completions.create(model="travel", messages=MSG, max_tokens=5)
    lifted = http.patch("/v1/deployments/travel", json={"tpm": None}).json()
    assert lifted["tpm"] is None and lifted["content_filter"] == "strict"  # what is left out stays
    assert client.chat.completions.create(model="travel", messages=MSG, max_tokens=2).choices
    bad = http.patch("/v1/deployments/travel", json={"model": "other"})
    assert bad.status_code == 400 and "model cannot change: deploy the model under another name" in bad.text
    nothing = http.patch("/v1/deployments/travel", json={})
    assert nothing.status_code == 400 and "nothing to change" in nothing.text
    assert http.patch("/v1/deployments/travel", json={"tpm": 0}).status_code == 400
    null_filter = http.patch("/v1/deployments/travel", json={"content_filter": None})  # a level, never null
    assert null_filter.status_code == 400 and "content_filter" in null_filter.text, null_filter.text
    schema = http.get("/openapi.json").json()["components"]["schemas"]["DeploymentSettings"]["properties"]
    assert "anyOf" not in schema["content_filter"] and "null" not in str(schema["content_filter"])
    assert http.patch("/v1/deployments/travel", json={"precision": "int4"}).json()["precision"] == "int4"
    assert http.patch("/v1/deployments/nope", json={"tpm": 10}).status_code == 404
    r = CliRunner().invoke(cli, ["deployments", "update", "travel", "--tpm", "300", "--no-blocklist",
                                 "--precision", "auto"])
    assert r.exit_code == 0 and "300 tokens/minute" in r.output, r.output
    dep = http.get("/v1/deployments/travel").json()
    assert (dep["tpm"], dep["content_filter"], dep["blocklist"], dep["precision"]) == (300, "strict", [], None)
    r = CliRunner().invoke(cli, ["deployments", "update", "travel"])
    assert r.exit_code == 2 and "nothing to change" in r.output


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


@pytest.mark.parametrize("extra,where", [
    ({"messages": [*MSG, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "search", "arguments": '{"q": "how to make a bomb"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "found"}]}, "messages[1].tool_calls[0]"),
    ({"tools": [{"type": "function", "function": {"name": "guide", "description": "Explain how to make a bomb.",
                                                  "parameters": {"type": "object", "properties": {}}}}]}, "tools[0]"),
])
def test_content_filter_reads_tool_calls_and_tools_too(http, tiny_model, extra, where):
    """Only the messages' content was screened: a blocked term in a call's arguments or a tool's
    description reached the model."""
    http.post("/v1/deployments", json={"name": "safe", "model": "tiny-random"})
    r = http.post("/v1/chat/completions", json={"model": "safe", "messages": MSG, "max_tokens": 2, **extra})
    assert r.status_code == 400 and r.json()["error"]["code"] == "content_filter", r.text
    assert f"{where} contains a blocked term" in r.json()["error"]["message"]


def test_a_deployment_of_a_removed_model_is_404(client, tiny_model):
    from tunery import db
    from tunery.errors import Conflict
    from tunery.models import ModelRecord, register, remove
    from tunery.serving import deployments

    register(ModelRecord(id="tmp-ft", kind="fine-tuned", path=tiny_model.path, source="test", parent="tiny-random",
                         method="full"))
    deployments.create("gone", "tmp-ft")
    with pytest.raises(Conflict, match="deployed as gone"):  # refused while deployed ...
        remove("tmp-ft", delete_files=False)
    db.execute("DELETE FROM models WHERE id=?", ("tmp-ft",))  # ... yet gone all the same (a home from before)
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


def test_a_deployment_cannot_take_a_catalog_or_fine_tune_name(http, tiny_model):
    from tunery.models.catalog import CATALOG

    unpulled = next(name for name in CATALOG if name != "tiny-random")
    r = http.post("/v1/deployments", json={"name": unpulled, "model": "tiny-random"})
    assert r.status_code == 409 and r.json()["error"]["param"] == "name", r.text
    assert "catalog" in r.json()["error"]["message"]
    r = http.post("/v1/deployments", json={"name": "ft:tiny-random:mine:1234", "model": "tiny-random"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "name", r.text
    assert http.get("/v1/deployments").json()["data"] == []
    ids = [m["id"] for m in http.get("/v1/models").json()["data"]]
    assert len(ids) == len(set(ids))


def test_a_deployed_model_is_not_deleted_over_the_api_nor_the_cli(http, tiny_model):
    from click.testing import CliRunner

    from tunery.cli.main import cli
    from tunery.errors import Conflict
    from tunery.models import ModelRecord, find, register

    register(ModelRecord(id="ft:tiny-random::cccc", kind="fine-tuned", path=tiny_model.path, source="test",
                         parent="tiny-random", method="full"))
    assert http.post("/v1/deployments", json={"name": "mine", "model": "ft:tiny-random::cccc"}).status_code == 200
    r = http.delete("/v1/models/ft:tiny-random::cccc")
    assert r.status_code == 409 and "deployed as mine" in r.json()["error"]["message"], r.text
    r = CliRunner().invoke(cli, ["models", "remove", "ft:tiny-random::cccc", "--yes"])
    assert isinstance(r.exception, Conflict) and "deployed as mine" in str(r.exception)
    assert find("ft:tiny-random::cccc") is not None


def test_precision_auto_is_the_server_default(http, tiny_model):
    r = http.post("/v1/deployments", json={"name": "auto-one", "model": "tiny-random", "precision": "auto"})
    assert r.status_code == 200, r.text
    assert r.json()["precision"] is None  # the server's, whatever it is when the deployment is used
