"""Optional API keys: with keys set, every /v1 route wants one of them."""

from __future__ import annotations

import httpx
import openai
import pytest


@pytest.fixture
def keyed(monkeypatch):
    from tunery.server import ServerThread

    monkeypatch.setenv("TUNERY_API_KEY", "env-one, env-two")
    with ServerThread(api_keys=["cli-key"]) as s:
        yield s


@pytest.mark.parametrize("path", ["/v1/models", "/v1/files", "/v1/fine_tuning/jobs", "/v1/deployments",
                                  "/v1/models/tiny-random"])
def test_missing_or_wrong_key_is_401(keyed, path):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic cli-key"}, {"api-key": "nope"}):
        r = httpx.get(keyed.url + path, headers=headers)
        assert r.status_code == 401, (path, headers)
        assert r.json()["error"]["code"] == "invalid_api_key"
    r = httpx.post(keyed.url + "/v1/chat/completions", json={"model": "x", "messages": []})
    assert r.status_code == 401  # auth is checked before the body


@pytest.mark.parametrize("key", ["cli-key", "env-one", "env-two"])
def test_every_configured_key_works(keyed, tiny_model, key):
    client = openai.OpenAI(base_url=keyed.base_url, api_key=key, max_retries=0)
    assert "tiny-random" in [m.id for m in client.models.list()]
    assert httpx.get(keyed.url + "/v1/models", headers={"api-key": key}).status_code == 200  # Azure's header


def test_sdk_raises_authentication_error(keyed):
    client = openai.OpenAI(base_url=keyed.base_url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_the_root_page_and_health_need_no_key(keyed):
    assert httpx.get(keyed.url + "/").status_code == 200
    assert httpx.get(keyed.url + "/health").json() == {"status": "ok"}
