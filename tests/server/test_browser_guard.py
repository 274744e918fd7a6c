"""Browser-origin safety (Ollama's CVE-2024-28224): web pages on other sites, or on a DNS-rebinding
name pointed at 127.0.0.1, get a 403 OpenAI error object; the studio (same origin), the openai SDK
(no Origin) and origins the user allows (with CORS answers) work."""

from __future__ import annotations

import io
import subprocess
import sys

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from tunery.errors import InvalidInput
from tunery.server import create_app
from tunery.server.auth import Access, check_exposure

EVIL = "http://evil.example"
UPLOAD = {"data": {"purpose": "fine-tune"}, "files": {"file": ("t.jsonl", b'{"messages": []}\n')}}


def host_refusal(host: str, port: int) -> dict:
    name = host.rsplit(":", 1)[0]
    return {"error": {"message": f"Host {host!r} is not allowed: this server answers to localhost, 127.0.0.1, "
                                 f"[::1] on port {port} (a web page on another name pointed at this machine "
                                 f"must not reach it) (if you reach it by that name, start it with "
                                 f"--allowed-host {name})",
                      "type": "invalid_request_error", "param": None, "code": "host_not_allowed"}}


def origin_refusal(origin: str) -> dict:
    return {"error": {"message": f"Origin {origin!r} is not allowed: web pages of other sites may not call this "
                                 f"server (to let that site's pages call it, start the server with "
                                 f"--cors-origin {origin})",
                      "type": "invalid_request_error", "param": None, "code": "origin_not_allowed"}}


@pytest.fixture
def stored(tunery_home) -> str:
    from tunery.data import files

    return files.create(b'{"secret": "the user\'s data"}\n', "private.jsonl").id


@pytest.mark.parametrize("host", ["evil.example:{port}", "evil.example", "127.0.0.1.evil.example:{port}"])
def test_a_foreign_host_is_refused(http, server, stored, host):
    host = host.format(port=server.port)
    r = http.get("/v1/files", headers={"Host": host})
    assert r.status_code == 403
    assert r.json() == host_refusal(host, server.port)


def test_a_rebinding_page_cannot_read_a_file(http, server, stored):
    # the page at http://rebind.attacker.example:PORT/ whose name now resolves to 127.0.0.1: its
    # fetch("/v1/files/ID/content") is same-origin for the browser, so it sends no Origin
    host = f"rebind.attacker.example:{server.port}"
    for path in (f"/v1/files/{stored}/content", "/v1/models", "/", "/health"):
        r = http.get(path, headers={"Host": host})
        assert r.status_code == 403, path
        assert r.json() == host_refusal(host, server.port)
        assert b"secret" not in r.content


def test_a_loopback_name_on_another_port_is_refused(http, server):
    host = f"localhost:{server.port + 1}"
    r = http.get("/v1/models", headers={"Host": host})
    assert r.status_code == 403 and r.json()["error"]["code"] == "host_not_allowed"


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "LOCALHOST"])
def test_loopback_names_on_the_port_are_served(http, server, name):
    assert http.get("/v1/models", headers={"Host": f"{name}:{server.port}"}).status_code == 200


def test_a_cross_site_form_upload_is_refused_and_stores_nothing(http, server, tunery_home):
    # a <form method=post enctype=multipart/form-data> on another site: a "simple" request, no preflight
    r = http.post("/v1/files", headers={"Origin": EVIL}, **UPLOAD)
    assert r.status_code == 403
    assert r.json() == origin_refusal(EVIL)
    from tunery.data import files

    assert files.list_files() == []
    assert not (tunery_home / "files").exists() or list((tunery_home / "files").iterdir()) == []


@pytest.mark.parametrize("origin", [EVIL, "null", "http://localhost:1", "https://127.0.0.1.evil.example"])
def test_a_cross_site_read_is_refused(http, server, stored, origin):
    r = http.get(f"/v1/files/{stored}/content", headers={"Origin": origin})
    assert r.status_code == 403
    assert r.json() == origin_refusal(origin)
    assert "access-control-allow-origin" not in r.headers


def test_the_studio_same_origin_is_served(http, server):
    own = f"http://127.0.0.1:{server.port}"
    r = http.post("/v1/files", headers={"Origin": own}, **UPLOAD)  # browsers send Origin on a same-origin POST
    assert r.status_code == 200, r.text
    assert http.get(f"/v1/files/{r.json()['id']}/content", headers={"Origin": own}).status_code == 200
    assert http.get("/", headers={"Origin": own}).status_code == 200
    assert "access-control-allow-origin" not in r.headers  # same origin needs no CORS


def test_the_sdk_sends_no_origin_and_is_served(client, tiny_model):
    f = client.files.create(file=("t.jsonl", io.BytesIO(b'{"messages": []}\n')), purpose="fine-tune")
    assert client.files.content(f.id).read() == b'{"messages": []}\n'
    assert "tiny-random" in [m.id for m in client.models.list()]


@pytest.fixture
def cors_app(monkeypatch) -> TestClient:
    monkeypatch.delenv("TUNERY_API_KEY", raising=False)
    return TestClient(create_app(allowed_hosts=["testserver"], cors_origins=["http://localhost:3000/"]))


def test_an_allowed_origin_gets_cors_answers(cors_app):
    app_origin = "http://localhost:3000"
    pre = cors_app.options("/v1/chat/completions", headers={
        "Origin": app_origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os"})
    assert pre.status_code == 204 and pre.content == b""
    assert pre.headers["access-control-allow-origin"] == app_origin
    assert pre.headers["access-control-allow-methods"] == "GET, POST, PUT, DELETE, OPTIONS"
    assert pre.headers["access-control-allow-headers"] == "authorization, content-type, x-stainless-os"
    assert pre.headers["vary"] == "Origin"
    r = cors_app.post("/v1/files", headers={"Origin": app_origin}, **UPLOAD)
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == app_origin
    listed = cors_app.get("/v1/files", headers={"Origin": app_origin})
    assert listed.headers["access-control-allow-origin"] == app_origin
    assert [f["id"] for f in listed.json()["data"]] == [r.json()["id"]]
    # an error keeps its CORS headers, so the page can read what went wrong
    missing = cors_app.get("/v1/files/file-nope", headers={"Origin": app_origin})
    assert missing.status_code == 404 and missing.headers["access-control-allow-origin"] == app_origin


def test_a_preflight_from_another_origin_is_refused(cors_app):
    r = cors_app.options("/v1/files", headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"})
    assert r.status_code == 403
    assert r.json() == origin_refusal(EVIL)
    assert "access-control-allow-origin" not in r.headers


def test_the_test_client_host_needs_allowing(monkeypatch):
    monkeypatch.delenv("TUNERY_ALLOWED_HOSTS", raising=False)
    r = TestClient(create_app()).get("/health")
    assert r.status_code == 403 and r.json()["error"]["code"] == "host_not_allowed"
    monkeypatch.setenv("TUNERY_ALLOWED_HOSTS", "other, testserver")
    assert TestClient(create_app()).get("/health").status_code == 200


@pytest.mark.parametrize("bind,host,ok", [
    (("127.0.0.1", 8000), "127.0.0.1:8000", True),
    (("127.0.0.1", 8000), "[::1]:8000", True),
    (("127.0.0.1", 8000), "127.0.0.1:8001", False),
    (("127.0.0.1", 8000), "127.0.0.1", False),  # port 80
    (("127.0.0.1", 80), "localhost", True),
    (("127.0.0.1", 8000), "localhost.:8000", True),
    (("127.0.0.1", 8000), "", False),
    (("127.0.0.1", 8000), "localhost:80x", False),
    (("192.168.1.5", 8000), "192.168.1.5:8000", True),
    (("192.168.1.5", 8000), "10.0.0.1:8000", False),
    (("0.0.0.0", 8000), "10.0.0.1:8000", True),  # every interface: any of the machine's addresses
    (("0.0.0.0", 8000), "[fe80::1]:8000", True),
    (("0.0.0.0", 8000), "box.lan:8000", False),  # a name needs --allowed-host
    (("::", 8000), "[::1]:8000", True),
])
def test_host_rules(bind, host, ok):
    assert Access.configure(bind).host_allowed(host, 80) is ok


def test_allowed_host_entries():
    access = Access.configure(("0.0.0.0", 8000), ["Box.lan", "proxy.example:443"])
    assert access.host_allowed("box.lan:8000", 80) and access.host_allowed("box.lan:9", 80)
    assert access.host_allowed("proxy.example", 443) and not access.host_allowed("proxy.example:8000", 80)
    assert Access.configure(("127.0.0.1", 8000), ["*"]).host_allowed("anything:1", 80)
    with pytest.raises(Exception, match="not a web origin"):
        Access.configure(cors_origins=["localhost:3000"])


def test_serving_beyond_loopback_needs_a_key():
    check_exposure("127.0.0.1", [])
    check_exposure("::1", [])
    check_exposure("localhost", [])
    check_exposure("0.0.0.0", ["k"])
    check_exposure("0.0.0.0", [], insecure_no_key=True)
    for host in ("0.0.0.0", "::", "192.168.1.5", "box.lan"):
        with pytest.raises(Exception, match="--insecure-no-key"):
            check_exposure(host, [])


def test_the_cli_refuses_a_keyless_public_bind(monkeypatch):
    monkeypatch.delenv("TUNERY_API_KEY", raising=False)
    monkeypatch.setenv("COLUMNS", "500")  # the console wraps at 80 columns when not a terminal
    r = subprocess.run([sys.executable, "-m", "tunery.cli.main", "serve", "--host", "0.0.0.0", "--no-worker"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "refusing to listen on 0.0.0.0 without an API key" in lines[0]
    assert "--api-key" in lines[0] and "--insecure-no-key" in lines[0]
    assert "serving on" not in r.stdout


def test_a_keyed_server_refuses_evil_origins_before_asking_for_the_key(monkeypatch):
    from tunery.server import ServerThread

    monkeypatch.delenv("TUNERY_API_KEY", raising=False)
    with ServerThread(api_keys=["k"]) as s:
        r = httpx.post(s.base_url + "/files", headers={"Origin": EVIL, "Authorization": "Bearer k"}, **UPLOAD)
        assert r.status_code == 403 and r.json() == origin_refusal(EVIL)
        ok = openai.OpenAI(base_url=s.base_url, api_key="k", max_retries=0)
        assert ok.files.list().data == []


def test_an_origin_of_another_scheme_is_another_site(http, server, stored):
    """https://127.0.0.1:PORT is not the plain-http server's own origin."""
    origin = f"https://127.0.0.1:{server.port}"
    r = http.get(f"/v1/files/{stored}/content", headers={"Origin": origin})
    assert r.status_code == 403
    assert r.json() == origin_refusal(origin)


def test_an_allowed_host_that_could_never_match_is_refused():
    assert Access.configure(("0.0.0.0", 8000), ["fe80::1"]).host_allowed("[fe80::1]:8000", 80)
    for bad in ("http://myhost", "myhost/", "my host"):
        with pytest.raises(InvalidInput) as e:
            Access.configure(("0.0.0.0", 8000), [bad])
        assert e.value.param == "allowed_host"
