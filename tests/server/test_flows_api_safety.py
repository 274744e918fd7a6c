"""What the prompt-flow routes refuse: Python written or run by a client that is not on this
machine (unless the server allows it), links to anything but a flow folder or to the bundled
gallery, copies of what is not a flow (.git, virtual environments, big folders), temporary folders
listed as flows, runs left Running by a dead process, and bad input that used to answer 500."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tunery.examples import FLOWS

WEB = "/v1/tunery/flows/web-classification"




def _clients(monkeypatch: pytest.MonkeyPatch, **kw) -> tuple[TestClient, TestClient]:
    """Two clients of one app: one on this machine, one from another (a LAN address)."""
    monkeypatch.setenv("TUNERY_ALLOWED_HOSTS", "testserver")
    monkeypatch.delenv("TUNERY_ALLOW_FLOW_CODE", raising=False)
    from tunery.server import create_app

    app = create_app(**kw)
    return TestClient(app, client=("127.0.0.1", 50000)), TestClient(app, client=("10.0.0.7", 50000))


@pytest.fixture
def local(monkeypatch, fake) -> TestClient:
    return _clients(monkeypatch)[0]


@pytest.fixture
def remote(monkeypatch, fake) -> TestClient:
    return _clients(monkeypatch)[1]


def ok(r):
    assert r.status_code == 200, r.text
    return r.json()


def local_flow(tmp_path: Path) -> Path:
    folder = tmp_path / "mine"
    shutil.copytree(FLOWS / "web-classification", folder)
    return folder


# ---- code only from trusted clients ---------------------------------------------------------

def test_a_remote_client_cannot_write_python_open_folders_or_run_user_code(monkeypatch, fake, tmp_path):
    local, remote = _clients(monkeypatch)
    ok(remote.post("/v1/tunery/flows", json={"gallery": "web-classification"}))
    line = {"inputs": {"url": "https://x/1"}}
    assert ok(remote.post(f"{WEB}/test", json=line))["data"][0]["status"] == "Completed"  # shipped Python

    r = remote.put(WEB, json={"files": {"evil.py": "import os\n"}})
    assert r.status_code == 403 and r.json()["error"]["code"] == "flow_code_not_allowed"
    assert not (Path(os.environ["TUNERY_HOME"]) / "flows" / "web-classification" / "evil.py").exists()
    dag = ok(remote.get(WEB))["dag"]
    dag["nodes"][0]["function"] = "other"  # the dag's python nodes are code too
    assert remote.put(WEB, json={"dag": dag}).status_code == 403
    assert remote.post("/v1/tunery/flows", json={"path": str(local_flow(tmp_path))}).status_code == 403
    ok(remote.put(WEB, json={"files": {"classify_with_llm.jinja2": "# user:\n{{url}}\n"}}))  # prompts are fine

    py = ok(local.get(WEB))["files"]["convert_to_dict.py"]
    ok(local.put(WEB, json={"files": {"convert_to_dict.py": py + "\n# edited here\n"}}))
    assert ok(local.post(f"{WEB}/test", json=line))["data"][0]["status"] == "Completed"
    r = remote.post(f"{WEB}/test", json=line)
    assert r.status_code == 403 and "--allow-flow-code" in r.json()["error"]["message"]
    body = {"flow": "web-classification", "data": "gallery:web-classification/data.jsonl", "name": "r1",
            "column_mapping": {"url": "${data.url}", "text_content": "${data.text_content}"}}
    assert remote.post("/v1/tunery/runs", json=body).status_code == 403
    ok(remote.post("/v1/tunery/flows", json={"flow": "web-classification", "name": "copy"}))
    assert remote.post("/v1/tunery/flows/copy/test", json=line).status_code == 403  # a copy stays user code


def test_allow_flow_code_lets_every_client_write_and_run_python(monkeypatch, fake, tmp_path):
    _, remote = _clients(monkeypatch, allow_flow_code=True)
    ok(remote.post("/v1/tunery/flows", json={"path": str(local_flow(tmp_path)), "name": "mine"}))
    assert ok(remote.post("/v1/tunery/flows/mine/test", json={"inputs": {"url": "u"}}))["data"][0]["status"] \
        == "Completed"
    ok(remote.put("/v1/tunery/flows/mine", json={"files": {"helper.py": "X = 1\n"}}))
    assert (tmp_path / "mine" / "helper.py").read_text() == "X = 1\n"


# ---- links and copies -----------------------------------------------------------------------

def test_only_a_flow_folder_outside_the_gallery_can_be_linked(local, tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    for path in [str(tmp_path / "notes.txt"), str(tmp_path), "/etc/hostname", "/"]:
        r = local.post("/v1/tunery/flows", json={"path": path})
        assert r.status_code == 404, (path, r.text)
    for path in [FLOWS / "web-classification", FLOWS / "web-classification" / "flow.dag.yaml"]:
        r = local.post("/v1/tunery/flows", json={"path": str(path)})
        assert r.status_code == 400 and "gallery" in r.json()["error"]["message"]
    assert local.post("/v1/tunery/flows", json={"path": "/tmp/a\0b"}).status_code == 400
    mine = local_flow(tmp_path)
    assert ok(local.post("/v1/tunery/flows", json={"path": str(mine / "flow.dag.yaml")}))["source"] == "link"
    assert ok(local.get("/v1/tunery/flows"))["data"][0]["origin"] == str(mine)


def test_copies_and_editors_skip_git_virtualenvs_links_and_big_folders(local, tmp_path, monkeypatch):
    mine = local_flow(tmp_path)
    for rel in [".git/config.py", ".venv/lib/a.py", "venv/lib/b.py", "env2/lib/c.py", "node_modules/d.py"]:
        (mine / rel).parent.mkdir(parents=True, exist_ok=True)
        (mine / rel).write_text("x = 1\n")
    (mine / "env2" / "pyvenv.cfg").write_text("home = /usr\n")
    (mine / "hostname.txt").symlink_to("/etc/hostname")
    ok(local.post("/v1/tunery/flows", json={"path": str(mine), "name": "mine"}))
    files = ok(local.get("/v1/tunery/flows/mine"))["files"]
    assert "convert_to_dict.py" in files
    assert not [f for f in files if f.startswith(("venv", "env2", "node_modules")) or f == "hostname.txt"]
    ok(local.post("/v1/tunery/flows", json={"flow": "mine", "name": "copied"}))
    copied = Path(os.environ["TUNERY_HOME"]) / "flows" / "copied"
    assert (copied / "convert_to_dict.py").is_file()
    assert not any((copied / d).exists() for d in (".git", ".venv", "venv", "env2", "node_modules", "hostname.txt"))
    monkeypatch.setattr("tunery.flows.library.MAX_COPY_BYTES", 1000)
    r = local.post("/v1/tunery/flows", json={"flow": "mine", "name": "too-big"})
    assert r.status_code == 400 and "MB" in r.json()["error"]["message"]
    assert not (copied.parent / "too-big").exists()


def test_a_save_leaves_no_folder_in_flows_and_temporary_folders_are_not_flows(local, monkeypatch):
    from tunery.flows import library

    ok(local.post("/v1/tunery/flows", json={"gallery": "web-classification"}))
    root = Path(os.environ["TUNERY_HOME"]) / "flows"
    seen = []
    validate = library.validate_flow
    monkeypatch.setattr(library, "validate_flow", lambda d: (seen.append(sorted(os.listdir(root))), validate(d))[1])
    ok(local.put(WEB, json={"files": {"classify_with_llm.jinja2": "# user:\n{{url}}\n"}}))
    assert seen and all(names == ["web-classification"] for names in seen)
    left = root / ".web-classification.abc123"  # what a crash during a clone leaves
    shutil.copytree(root / "web-classification", left)
    assert [f["name"] for f in ok(local.get("/v1/tunery/flows"))["data"]] == ["web-classification"]


def test_two_clones_racing_for_one_name_get_409(local, monkeypatch):
    from tunery.flows import library

    copy = library._copy_flow

    def racing(src, dst, ignore=None):  # another request finishes the same name meanwhile
        copy(src, dst, ignore)
        shutil.copytree(dst, library.flows_root() / "same")

    monkeypatch.setattr(library, "_copy_flow", racing)
    r = local.post("/v1/tunery/flows", json={"gallery": "web-classification", "name": "same"})
    assert r.status_code == 409, r.text


# ---- runs -----------------------------------------------------------------------------------

def test_a_run_whose_process_died_reads_failed(local):
    from tunery import db
    from tunery.flows.runs import RunStore, get_run

    store = RunStore.create("orphan", FLOWS / "web-classification", {})
    assert get_run("orphan").status == "Running"  # this process runs it
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    db.execute("UPDATE runs SET meta=? WHERE id=?", (db.dumps({**store.record.meta, "pid": dead.pid}),
                                                     store.record.id))
    run = ok(local.get("/v1/tunery/runs/orphan"))
    assert run["status"] == "Failed" and "stopped" in run["error"]
    assert get_run("orphan").status == "Failed"


def test_stopping_the_server_cancels_its_runs(monkeypatch, fake, start_batch):
    from tunery.flows.runs import get_run

    gate = threading.Event()
    fake.reply = lambda messages: (gate.wait(0.2), fake.replies[0])[1]
    local, _ = _clients(monkeypatch)
    with local:  # leaving it runs the app's shutdown
        ok(local.post("/v1/tunery/flows", json={"gallery": "web-classification"}))
        start_batch(local, "long", 200)
    assert get_run("long").status == "Canceled"


def test_run_names_are_checked_before_the_thread_and_evaluations_get_their_own(local):
    ok(local.post("/v1/tunery/flows", json={"gallery": "web-classification"}))
    body = {"flow": "web-classification", "data": "gallery:web-classification/data.jsonl",
            "column_mapping": {"url": "${data.url}", "text_content": "${data.text_content}"}}
    r = local.post("/v1/tunery/runs", json={**body, "name": "a/../../b"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "name"
    ev = {"flow": "gallery:classification-accuracy-eval",
          "column_mapping": {"groundtruth": "${data.answer}", "prediction": "${run.outputs.category}"}}
    r = local.post("/v1/tunery/runs", json={**body, "name": "twice", "evaluations": [{**ev, "name": "e"}, {**ev, "name": "e"}]})
    assert r.status_code == 409
    sub = ok(local.post("/v1/tunery/runs", json={**body, "name": "two", "evaluations": [ev, ev]}))
    assert len(set(sub["evaluations"])) == 2
    deadline = time.monotonic() + 60
    while ok(local.get("/v1/tunery/runs/two"))["submission"]["status"] in ("Starting", "Running"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert [e["status"] for e in ok(local.get("/v1/tunery/runs/two"))["evaluations"]] == ["Completed"] * 2


def test_a_submission_answers_a_copy_of_its_progress():
    from tunery.flows.background import Submission

    sub = Submission("x", [])
    sub.progress["x"] = {"done": 1}
    d = sub.to_dict()
    sub.progress["x"]["done"] = 2
    assert d["progress"] == {"x": {"done": 1}}


# ---- bad input is a 400 or 404, not a 500 ---------------------------------------------------

@pytest.mark.parametrize("text", ["- a list\n", "nodes: [\n", "nodes:\n- name: classify_with_llm\n  use_variants: true\n"])
def test_cloning_a_variant_of_a_broken_flow_is_a_400(local, text):
    ok(local.post("/v1/tunery/flows", json={"gallery": "web-classification"}))
    (Path(os.environ["TUNERY_HOME"]) / "flows" / "web-classification" / "flow.dag.yaml").write_text(text)
    r = local.post(f"{WEB}/nodes/classify_with_llm/variants", json={})
    assert r.status_code == 400 and r.json()["error"]["message"], r.text


def test_a_nul_in_a_file_name_and_a_node_without_variants_are_refused(local):
    ok(local.post("/v1/tunery/flows", json={"gallery": "web-classification"}))
    r = local.put(WEB, json={"files": {"a\0b.txt": "x"}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "files"
    for node in ["nope", "convert_to_dict"]:
        r = local.post(f"{WEB}/test", json={"inputs": {"url": "u"}, "node": node})
        assert r.status_code == 404 and r.json()["error"]["param"] == "node"


def test_cors_preflights_allow_put(monkeypatch, fake):
    monkeypatch.setenv("TUNERY_ALLOWED_HOSTS", "testserver")
    from tunery.server import create_app

    client = TestClient(create_app(cors_origins=["http://localhost:3000"]))
    r = client.options(WEB, headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "PUT"})
    assert "PUT" in r.headers.get("access-control-allow-methods", ""), r.headers
