"""The prompt-flow routes the studio uses, with a scripted model answering every llm node: gallery
and clone, read and save (validated, atomic, errors naming node and field), variants, a one-line
run per variant, batch run with an evaluation in the background, cancel, detail and export; and
the round trip: a flow saved through the API still runs as ``tunery run create`` runs it, and
saving a real sample unchanged keeps its yaml."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from tunery.examples import FLOWS


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch, fake) -> TestClient:
    monkeypatch.setenv("TUNERY_ALLOWED_HOSTS", "testserver")
    from tunery.server import create_app

    return TestClient(create_app(), client=("127.0.0.1", 50000))  # on this machine: may run flow code


def ok(r):
    assert r.status_code == 200, r.text
    return r.json()


def clone(client: TestClient, gallery: str = "web-classification", name: str | None = None) -> dict:
    return ok(client.post("/v1/tunery/flows", json={"gallery": gallery, "name": name}))


def wait_run(client: TestClient, name: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        d = ok(client.get(f"/v1/tunery/runs/{name}"))
        sub = d.get("submission") or {}
        if d["status"] not in ("Starting", "Running") and sub.get("status") not in ("Starting", "Running"):
            return d
        assert time.monotonic() < deadline, d
        time.sleep(0.1)


def test_gallery_lists_the_bundled_flows_with_inputs_and_outputs(client):
    data = {f["name"]: f for f in ok(client.get("/v1/tunery/flows/gallery"))["data"]}
    assert {"web-classification", "classification-accuracy-eval", "summarization"} <= set(data)
    web = data["web-classification"]
    assert [i["name"] for i in web["inputs"]] == ["url", "text_content"]
    assert [o["name"] for o in web["outputs"]] == ["category", "evidence"]
    assert web["description"].startswith("Classify a web page") and not web["evaluation"]
    assert data["classification-accuracy-eval"]["evaluation"]


def test_clone_lists_and_deletes_only_tunery_flows(client, tmp_path):
    first = clone(client)
    second = clone(client)
    assert (first["name"], second["name"]) == ("web-classification", "web-classification-2")
    home = Path(os.environ["TUNERY_HOME"])
    assert (home / "flows" / "web-classification" / "flow.dag.yaml").is_file()
    (home / "flows" / "stranger").mkdir()  # a folder tunery did not make: not listed, not deletable
    names = [f["name"] for f in ok(client.get("/v1/tunery/flows"))["data"]]
    assert names == ["web-classification", "web-classification-2"]
    assert client.delete("/v1/tunery/flows/stranger").status_code == 404
    assert (home / "flows" / "stranger").is_dir()
    ok(client.delete("/v1/tunery/flows/web-classification-2"))
    assert not (home / "flows" / "web-classification-2").exists()
    r = client.post("/v1/tunery/flows", json={"gallery": "web-classification", "name": "web-classification"})
    assert r.status_code == 409 and r.json()["error"]["param"] == "name"

    # an opened folder is linked: deleting it removes the link, never the user's files
    own = tmp_path / "mine"
    shutil.copytree(FLOWS / "summarization", own)
    linked = ok(client.post("/v1/tunery/flows", json={"path": str(own), "name": "mine"}))
    assert linked["source"] == "link"
    assert "summarize.jinja2" in ok(client.get("/v1/tunery/flows/mine"))["files"]
    ok(client.delete("/v1/tunery/flows/mine"))
    assert (own / "flow.dag.yaml").is_file()


def test_read_gives_yaml_files_graph_and_variants(client):
    clone(client)
    f = ok(client.get("/v1/tunery/flows/web-classification"))
    assert f["ok"] and f["problems"] == []
    assert f["dag"]["node_variants"]["classify_with_llm"]["default_variant_id"] == "variant_0"
    assert {"classify_with_llm.jinja2", "convert_to_dict.py", "prepare_examples.py"} <= set(f["files"])
    nodes = {n["name"]: n for n in f["graph"]["nodes"]}
    assert nodes["prepare_examples"]["level"] == 1 and nodes["classify_with_llm"]["level"] == 2
    assert nodes["convert_to_dict"]["level"] == 3
    assert set(nodes["classify_with_llm"]["variants"]) == {"variant_0", "variant_1"}


def test_save_validates_and_names_the_node_and_field(client):
    clone(client)
    f = ok(client.get("/v1/tunery/flows/web-classification"))
    dag = f["dag"]
    dag["nodes"][2]["inputs"]["input_str"] = "${classify_with_llm.outputs}"
    home = Path(os.environ["TUNERY_HOME"])
    before = (home / "flows" / "web-classification" / "flow.dag.yaml").read_text()
    r = client.put("/v1/tunery/flows/web-classification", json={"dag": dag})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "invalid_flow" and err["param"] == "node 'convert_to_dict', inputs.input_str"
    problem = err["problems"][0]
    assert problem["node"] == "convert_to_dict" and problem["field"] == "inputs.input_str"
    assert "did you mean .output?" in problem["message"]
    # the same message as `tunery flow validate`
    from tunery.flows import validate_flow

    assert (home / "flows" / "web-classification" / "flow.dag.yaml").read_text() == before  # nothing written
    scratch = home / "scratch"
    shutil.copytree(home / "flows" / "web-classification", scratch)
    (scratch / "flow.dag.yaml").write_text(yaml.safe_dump(dag, sort_keys=False))
    assert str(validate_flow(scratch).errors[0]) == problem["text"]

    # a template error names the variant
    r = client.put("/v1/tunery/flows/web-classification",
                   json={"files": {"classify_with_llm__variant_1.jinja2": "# user:\n{{ url "}})
    assert r.status_code == 400
    p = r.json()["error"]["problems"][0]
    assert (p["node"], p["variant"]) == ("classify_with_llm", "variant_1")

    # and files outside the folder are refused
    r = client.put("/v1/tunery/flows/web-classification", json={"files": {"../x.py": "x = 1"}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "files"


def test_saving_the_real_samples_unchanged_keeps_their_yaml(client):
    for name in ("web-classification", "summarization", "classification-accuracy-eval"):
        clone(client, name)
        f = ok(client.get(f"/v1/tunery/flows/{name}"))
        saved = ok(client.put(f"/v1/tunery/flows/{name}", json={"dag": f["dag"], "files": f["files"]}))
        text = (FLOWS / name / "flow.dag.yaml").read_text()
        assert saved["dag_text"] == text  # unchanged: the very text, comments included
        # changed: plain yaml that parses to what was sent
        dag = {**f["dag"], "inputs": {**f["dag"]["inputs"]}}
        first = next(iter(dag["inputs"]))
        dag["inputs"][first] = {**dag["inputs"][first], "description": "edited"}
        saved = ok(client.put(f"/v1/tunery/flows/{name}", json={"dag": dag}))
        assert yaml.safe_load(saved["dag_text"]) == dag


def test_edit_clone_variant_set_default_and_run_both(client, fake):
    clone(client)
    ok(client.put("/v1/tunery/flows/web-classification",
                  json={"files": {"classify_with_llm.jinja2": "# system:\nClassify it.\n# user:\n{{url}} {{text_content}}\n"}}))
    f = ok(client.post("/v1/tunery/flows/web-classification/nodes/classify_with_llm/variants",
                       json={"source": "variant_0"}))
    assert f["variant"] == "variant_2"
    assert f["files"]["classify_with_llm__variant_2.jinja2"].startswith("# system:\nClassify it.")
    body = f["dag"]["node_variants"]["classify_with_llm"]["variants"]["variant_2"]["node"]
    assert body["source"]["path"] == "classify_with_llm__variant_2.jinja2"
    ok(client.put("/v1/tunery/flows/web-classification",
                  json={"files": {"classify_with_llm__variant_2.jinja2": "# user:\nOnly the URL: {{url}}\n"}}))

    runs = ok(client.post("/v1/tunery/flows/web-classification/test",
                          json={"inputs": {"url": "https://arxiv.org/abs/1"}, "node": "classify_with_llm",
                                "variants": ["variant_0", "variant_2"]}))["data"]
    assert [r["variant"] for r in runs] == ["variant_0", "variant_2"]
    for r in runs:
        assert r["status"] == "Completed" and r["outputs"] == {"category": "Academic", "evidence": "Both"}
        llm = r["nodes"]["classify_with_llm"]
        assert llm["output"] == fake.replies[0] and llm["usage"]["completion_tokens"] > 0 and llm["duration"] >= 0
        assert r["usage"]["prompt_tokens"] == llm["usage"]["prompt_tokens"]
    prompts = [call[0][-1].content for call in fake.calls]
    assert prompts[0].startswith("https://arxiv.org/abs/1") and prompts[1] == "Only the URL: https://arxiv.org/abs/1"

    before = ok(client.get("/v1/tunery/flows/web-classification"))["dag_text"].splitlines()
    f = ok(client.put("/v1/tunery/flows/web-classification/nodes/classify_with_llm/default_variant",
                      json={"variant": "variant_2"}))
    assert f["dag"]["node_variants"]["classify_with_llm"]["default_variant_id"] == "variant_2"
    after = f["dag_text"].splitlines()
    assert len(after) == len(before) and sum(a != b for a, b in zip(after, before, strict=True)) == 1
    r = client.put("/v1/tunery/flows/web-classification/nodes/classify_with_llm/default_variant",
                   json={"variant": "nope"})
    assert r.status_code == 400 and "variant_0" in r.json()["error"]["message"]


def test_a_plain_llm_node_gets_variants_when_cloned(client):
    clone(client)
    dag = ok(client.get("/v1/tunery/flows/web-classification"))["dag"]
    body = dag.pop("node_variants")["classify_with_llm"]["variants"]["variant_0"]["node"]
    dag["nodes"][1] = {"name": "classify_with_llm", **body}
    f = ok(client.put("/v1/tunery/flows/web-classification", json={"dag": dag}))
    assert f["ok"] and not f["graph"]["nodes"][1]["variants"]
    f = ok(client.post("/v1/tunery/flows/web-classification/nodes/classify_with_llm/variants", json={}))
    assert f["variant"] == "variant_1" and f["ok"]
    nv = f["dag"]["node_variants"]["classify_with_llm"]
    assert nv["default_variant_id"] == "variant_0" and set(nv["variants"]) == {"variant_0", "variant_1"}
    assert nv["variants"]["variant_0"]["node"] == body
    r = client.post("/v1/tunery/flows/web-classification/nodes/convert_to_dict/variants", json={})
    assert r.status_code == 400 and "only llm nodes" in r.json()["error"]["message"]


def test_batch_run_with_evaluation_progress_detail_compare_and_export(client):
    clone(client)
    data = ok(client.get("/v1/tunery/flow-data"))["data"]
    assert "gallery:web-classification/data.jsonl" in [d["id"] for d in data]
    prev = ok(client.get("/v1/tunery/flow-data/preview", params={"id": "gallery:web-classification/data.jsonl"}))
    assert {"url", "text_content", "answer"} <= set(prev["columns"]) and len(prev["rows"]) == 5
    body = {"flow": "web-classification", "data": "gallery:web-classification/data.jsonl",
            "variant": "${classify_with_llm.variant_1}", "name": "web_v1",
            "column_mapping": {"url": "${data.url}", "text_content": "${data.text_content}"},
            "evaluations": [{"flow": "gallery:classification-accuracy-eval",
                             "column_mapping": {"groundtruth": "${data.answer}",
                                                "prediction": "${run.outputs.category}"}}]}
    sub = ok(client.post("/v1/tunery/runs", json=body))
    assert sub["name"] == "web_v1" and sub["evaluations"] == ["web_v1_eval_classification-accuracy-eval"]
    run = wait_run(client, "web_v1")
    assert run["status"] == "Completed" and run["submission"]["status"] == "Completed"
    total = prev["total"]
    assert len(run["lines"]) == total and all(ln["outputs"]["category"] == "Academic" for ln in run["lines"])
    [ev] = run["evaluations"]
    answers = [row["answer"] for row in map(json.loads, (FLOWS / "web-classification" / "data.jsonl")
                                             .read_text().splitlines())]
    assert ev["metrics"]["accuracy"] == pytest.approx(answers.count("Academic") / total, abs=0.01)

    runs = ok(client.get("/v1/tunery/runs"))["data"]
    assert {"web_v1", "web_v1_eval_classification-accuracy-eval"} <= {r["name"] for r in runs}
    cmp = ok(client.get("/v1/tunery/runs/compare", params={"names": "web_v1"}))
    assert cmp["runs"][0]["name"] == "web_v1"

    jsonl = client.get("/v1/tunery/runs/web_v1/export", params={"format": "jsonl"})
    rows = [json.loads(x) for x in jsonl.text.splitlines()]
    assert len(rows) == total and rows[0]["outputs.category"] == "Academic" and "inputs.url" in rows[0]
    csv_text = client.get("/v1/tunery/runs/web_v1/export", params={"format": "csv"}).text
    assert csv_text.splitlines()[0].startswith("line_number,status,inputs.url") and len(csv_text.splitlines()) == total + 1

    # a name taken, and a mapping naming a column the data lacks, are refused before anything runs
    assert client.post("/v1/tunery/runs", json=body).status_code == 409
    bad = {**body, "name": "other", "evaluations": [{"flow": "gallery:classification-accuracy-eval",
                                                      "column_mapping": {"groundtruth": "${data.nope}"}}]}
    r = client.post("/v1/tunery/runs", json=bad)
    assert r.status_code == 400 and r.json()["error"]["param"] == "evaluations[0].column_mapping.groundtruth"
    bad = {**body, "name": "other2", "evaluations": [{"flow": "gallery:classification-accuracy-eval",
                                                       "column_mapping": {"prediction": "${run.outputs.label}"}}]}
    r = client.post("/v1/tunery/runs", json=bad)
    assert r.status_code == 400 and "category" in r.json()["error"]["message"]


def test_cancel_stops_a_running_batch(client, fake, start_batch):
    gate = threading.Event()
    fake.reply = lambda messages: (gate.wait(30), fake.replies[0])[1]
    clone(client)
    start_batch(client, "to_cancel", 20)
    ok(client.post("/v1/tunery/runs/to_cancel/cancel"))
    gate.set()
    run = wait_run(client, "to_cancel")
    assert run["status"] == "Canceled" and run["submission"]["status"] == "Canceled"
    assert len(run["lines"]) < 20
    assert client.post("/v1/tunery/runs/to_cancel/cancel").status_code == 400


def test_cancelling_a_run_that_does_not_exist_is_404(client):
    r = client.post("/v1/tunery/runs/nope/cancel")
    assert r.status_code == 404 and r.json()["error"]["param"] == "name" and "'nope'" in r.json()["error"]["message"]


def test_upload_names_the_bad_line(client, tunery_home):
    r = client.post("/v1/tunery/flow-data", json={"name": "bad.jsonl", "content": '{"a": 1}\nnot json\n'})
    assert r.status_code == 400
    assert r.json()["error"]["message"].startswith("bad.jsonl line 2: ")  # the file sent, not a temporary name
    assert "upload:bad.jsonl" not in [d["id"] for d in ok(client.get("/v1/tunery/flow-data"))["data"]]
    assert not [p for p in tunery_home.rglob("*") if "check" in p.name]  # nothing left behind


def test_a_flow_saved_through_the_api_runs_as_run_create_runs_it(client, fake):
    """The round trip: edit in the API, then the flows batch runner (``tunery run create``) runs
    the saved folder unchanged, the edited prompt included."""
    from tunery.flows import RunSpec, create_run

    clone(client)
    f = ok(client.get("/v1/tunery/flows/web-classification"))
    dag = f["dag"]
    dag["inputs"]["url"]["default"] = "https://example.com/edited"
    ok(client.put("/v1/tunery/flows/web-classification",
                  json={"dag": dag, "files": {"classify_with_llm.jinja2": "# user:\nEdited {{url}}\n"}}))
    folder = Path(os.environ["TUNERY_HOME"]) / "flows" / "web-classification"
    data = folder.parent / "texts.jsonl"  # no url column: the edited default fills it
    data.write_text("".join(json.dumps({"text": f"page {i}"}) + "\n" for i in range(3)))
    record = create_run(RunSpec(flow=str(folder), data=str(data), name="roundtrip",
                                column_mapping={"text_content": "${data.text}"}),
                        model_factory=lambda c, m: fake)
    assert record.status == "Completed" and record.meta["failed_lines"] == 0 and len(fake.calls) == 3
    assert all(call[0][-1].content == "Edited https://example.com/edited" for call in fake.calls)


def test_flow_pages_are_shells_carrying_the_name_escaped(client):
    r = client.get("/flows")
    assert r.status_code == 200 and 'src="/studio/static/js/flows.js"' in r.text and 'href="/flows"' in r.text
    r = client.get("/flows/web-<x>")
    assert 'data-flow="web-&lt;x&gt;"' in r.text and "<x>" not in r.text and "js/flow_editor.js" in r.text
    r = client.get("/runs/web_v1")
    assert 'data-run="web_v1"' in r.text and "js/flow_run.js" in r.text
    for path in ("flows.css", "js/flow_editor.js", "js/flow_run.js"):
        assert client.get(f"/studio/static/{path}").status_code == 200
    # the studio's own run comparison is not taken for a run named "compare"
    assert client.get("/v1/tunery/runs/compare", params={"names": "nope"}).json()["error"]["param"] == "name"
