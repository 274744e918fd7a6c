"""Bad input to the studio's flow routes (``/v1/tunery/flows``, ``/flow-data``) is a 4xx naming
what to fix, never a 500: a flow file validation would refuse, a template with an unknown filter,
a file saved where a file already is, data a run cannot read, a prompt that is not UTF-8, a linked
folder that is gone, and what a Python node returns that JSON has no word for."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tunery.examples import FLOWS


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("TUNERY_ALLOWED_HOSTS", "testserver")
    from tunery.server import create_app

    # a client on this machine may run flow code; server errors come back as the 500 a user gets
    return TestClient(create_app(), client=("127.0.0.1", 50000), raise_server_exceptions=False)


def clone(client: TestClient, gallery: str = "web-classification") -> Path:
    r = client.post("/v1/tunery/flows", json={"gallery": gallery})
    assert r.status_code == 200, r.text
    return Path(os.environ["TUNERY_HOME"]) / "flows" / r.json()["name"]


def error(r, status: int = 400) -> dict:
    assert r.status_code == status, r.text
    return r.json()["error"]


def test_a_flow_file_validation_refuses_still_lists_and_opens(client):
    """``inputs: 5`` once made GET /flows a 500, hiding every other flow from the studio."""
    folder = clone(client)
    (folder / "flow.dag.yaml").write_text("inputs: 5\noutputs: [a]\nnodes: 4\n")
    listed = client.get("/v1/tunery/flows")
    assert listed.status_code == 200 and listed.json()["data"][0]["inputs"] == []
    opened = client.get("/v1/tunery/flows/web-classification")
    assert opened.status_code == 200 and not opened.json()["ok"]
    (folder / "flow.dag.yaml").write_text("inputs: [\n")
    summary = client.get("/v1/tunery/flows").json()["data"][0]
    assert summary["error"] == f"{folder / 'flow.dag.yaml'}: line 2: not valid YAML: expected the node content, " \
                               "but found '<stream end>'"


def test_a_template_with_an_unknown_filter_is_a_400_naming_its_node(client):
    folder = clone(client)
    before = (folder / "classify_with_llm.jinja2").read_text()
    err = error(client.put("/v1/tunery/flows/web-classification",
                           json={"files": {"classify_with_llm.jinja2": "# user:\n{{ url | shout }}\n"}}))
    assert err["param"] == "node 'classify_with_llm' (variant variant_0), source.path"
    assert err["problems"][0]["message"] == "template classify_with_llm.jinja2 line 2: No filter named 'shout'."
    assert (folder / "classify_with_llm.jinja2").read_text() == before  # nothing written


@pytest.mark.parametrize(("files", "message"), [
    ({"classify_with_llm.jinja2/notes.txt": "x"}, "'classify_with_llm.jinja2' is a file, not a folder"),
    ({"notes.txt": "x", "notes.txt/more.txt": "y"}, "'notes.txt' is a file, not a folder"),
])
def test_a_file_saved_where_a_file_is_is_a_400(client, files, message):
    clone(client)
    err = error(client.put("/v1/tunery/flows/web-classification", json={"files": files}))
    assert err["param"] == "files" and message in err["message"]
    folder = clone(client, "summarization")
    (folder / "notes").mkdir()
    err = error(client.put("/v1/tunery/flows/summarization", json={"files": {"notes": "x"}}))
    assert "only text files" in err["message"]


@pytest.mark.parametrize(("name", "content", "message"), [
    ("wide.csv", "a,b\n1,2,3\n", "wide.csv line 2: 3 fields, but the header names 2"),
    ("header.csv", "a,b\n", "header.csv has no lines under its header"),
    ("deep.jsonl", '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}\n", "deep.jsonl line 1: not valid JSON (nested"),
    ("long.jsonl", '{"a": ' + "1" * 5000 + "}\n", "long.jsonl line 1: not valid JSON (a number is too long"),
])
def test_an_upload_a_run_cannot_read_is_a_400_naming_its_line(client, name, content, message):
    err = error(client.post("/v1/tunery/flow-data", json={"name": name, "content": content}))
    assert err["param"] == "data" and err["message"].startswith(message), err
    assert client.get("/v1/tunery/flow-data").json()["data"][0]["kind"] == "gallery"  # nothing stored


def test_cloning_a_variant_of_a_prompt_that_is_not_utf8_names_its_line(client):
    folder = clone(client)
    (folder / "classify_with_llm.jinja2").write_bytes(b"# user:\ncaf\xe9 {{url}}\n")
    err = error(client.post("/v1/tunery/flows/web-classification/nodes/classify_with_llm/variants", json={}))
    assert "classify_with_llm.jinja2, line 2: not valid UTF-8 (byte 0xe9" in err["message"]


def test_cloning_a_linked_folder_that_is_gone_is_a_404(client, tmp_path):
    own = tmp_path / "own"
    shutil.copytree(FLOWS / "summarization", own)
    assert client.post("/v1/tunery/flows", json={"path": str(own), "name": "own"}).status_code == 200
    shutil.rmtree(own)
    err = error(client.post("/v1/tunery/flows", json={"flow": "own"}), 404)
    assert err["message"] == f"flow {own} does not exist"


def test_a_python_node_returning_what_json_cannot_carry_is_shown(client):
    """An object or bytes in a node's output once made the studio's test call a 500."""
    folder = clone(client, "classification-accuracy-eval")
    (folder / "grade.py").write_text(
        "from promptflow.core import tool\n\nclass Label:\n    def __str__(self):\n        return 'a label'\n\n"
        "@tool\ndef grade(groundtruth: str, prediction: str):\n    return {'label': Label(), 'raw': b'\\xff'}\n")
    r = client.post("/v1/tunery/flows/classification-accuracy-eval/test", json={"inputs": {}})
    assert r.status_code == 200, r.text
    assert r.json()["data"][0]["outputs"] == {"grade": {"label": "a label", "raw": "b'\\xff'"}}


def test_a_save_keeps_the_files_permissions(client, tmp_path):
    """An atomic write renames a new file into place: without care, a private file (0600) would
    come back readable by all, a group-writable one (0660) no longer writable by the group."""
    own = tmp_path / "own"
    shutil.copytree(FLOWS / "summarization", own)
    modes = {"flow.dag.yaml": 0o660, "summarize.jinja2": 0o600}
    for name, mode in modes.items():
        (own / name).chmod(mode)
    assert client.post("/v1/tunery/flows", json={"path": str(own), "name": "own"}).status_code == 200
    dag = client.get("/v1/tunery/flows/own").json()["dag"]
    dag["inputs"]["text"]["description"] = "edited"
    r = client.put("/v1/tunery/flows/own", json={"dag": dag, "files": {"summarize.jinja2": "# user:\n{{text}}\n"}})
    assert r.status_code == 200, r.text
    assert "edited" in (own / "flow.dag.yaml").read_text()
    assert {name: stat.S_IMODE((own / name).stat().st_mode) for name in modes} == modes
