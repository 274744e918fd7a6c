"""The studio's server side without a browser: page shells, static files, and the /v1/tunery
extensions (file reports, job metrics, example questions, flow runs), errors included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from studio_data import BAD_JSON, BAD_ROLE, valid_lines

from tunery.server import create_app
from tunery.server.studio.pages import PAGES

BAD_LINES = [BAD_JSON, BAD_ROLE]  # line 1: not JSON; line 2: an unknown role


@pytest.fixture
def client() -> TestClient:
    return TestClient(create_app())


def upload(client: TestClient, lines: list[str], name: str = "train.jsonl") -> str:
    body = "".join(line + "\n" for line in lines).encode()
    r = client.post("/v1/files", files={"file": (name, body)}, data={"purpose": "fine-tune"})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def test_every_page_is_a_shell_with_the_navigation(client):
    root = client.get("/", follow_redirects=False)
    assert root.status_code == 200 and "<title>Chat playground · tunery studio</title>" in root.text
    for slug, (_label, title) in PAGES.items():
        r = client.get(f"/{slug}")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert f"<title>{title} · tunery studio</title>" in r.text
        assert f'src="/studio/static/js/{"finetune" if slug == "fine-tune" else slug}.js"' in r.text
        assert all(f'href="/{other}"' in r.text for other in PAGES)  # every page links every page
        assert "http://" not in r.text and "https://" not in r.text  # nothing from elsewhere


def test_the_job_page_carries_its_id_escaped(client):
    r = client.get("/jobs/ftjob-<x>")
    assert 'data-job-id="ftjob-&lt;x&gt;"' in r.text and "<x>" not in r.text


def test_static_files_have_their_types_and_stay_inside_the_folder(client):
    assert client.get("/studio/static/js/api.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/studio/static/studio.css").headers["content-type"].startswith("text/css")
    vendor = client.get("/studio/static/vendor/uplot/uPlot.iife.min.js")
    assert vendor.status_code == 200 and "uPlot" in vendor.text
    assert "MIT" in client.get("/studio/static/vendor/uplot/LICENSE").text
    for bad in ("../pages.py", "..%2Fpages.py", "js/../../api.py", "nope.js"):
        r = client.get(f"/studio/static/{bad}")
        assert r.status_code == 404 and r.json()["error"]["message"], bad


BROWSER = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"}


def test_a_browser_asking_for_an_unknown_page_gets_the_studios_not_found_page(client):
    for path in ("/nope", "/studio/nope", "/jobs/ftjob-1/nope", "/studio/static/nope.js"):
        r = client.get(path, headers=BROWSER)
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html"), path
        assert "<title>Page not found · tunery studio</title>" in r.text and 'href="/"' in r.text, path
        assert f'<code class="path">{path}</code>' in r.text
    assert "&lt;b&gt;" in client.get("/%3Cb%3E", headers=BROWSER).text  # the path is shown escaped


def test_api_clients_and_api_paths_keep_the_json_404(client):
    cases = [("GET", "/nope", {}), ("GET", "/nope", {"accept": "application/json"}), ("GET", "/v1/nope", BROWSER),
             ("GET", "/v1", BROWSER), ("POST", "/nope", BROWSER), ("GET", "/studio/static/nope.js", {"accept": "*/*"})]
    for method, path, headers in cases:
        r = client.request(method, path, headers=headers)
        assert r.status_code == 404 and r.headers["content-type"] == "application/json", (method, path)
        assert r.json()["error"]["message"], (method, path)
    assert client.get("/v1/nope", headers=BROWSER).json()["error"]["code"] == "unknown_url"
    # routing is otherwise untouched: a wrong method is still a 405, a trailing slash a redirect
    assert client.delete("/v1/models", headers=BROWSER).status_code == 405
    assert client.get("/playground/", headers=BROWSER, follow_redirects=False).status_code == 307


def test_no_script_or_style_names_another_host():
    static = Path(__file__).resolve().parents[2] / "src/tunery/server/studio/static"
    for path in [*static.glob("js/*.js"), static / "studio.css", *static.parent.glob("templates/*.html")]:
        text = path.read_text(encoding="utf-8")
        for needle in ("http://", "https://", "//cdn", "fonts.googleapis"):
            assert needle not in text.replace("http://www.w3.org/2000/svg", ""), f"{path.name} names {needle}"


def test_report_of_an_invalid_file_lists_errors_by_line_and_field(client):
    fid = upload(client, BAD_LINES + valid_lines(10))
    r = client.get(f"/v1/tunery/files/{fid}/report")
    assert r.status_code == 200, r.text
    v = r.json()["validation"]
    assert v["ok"] is False and v["n_lines"] == 12 and v["n_examples"] == 10
    errors = [(i["line"], i["field"]) for i in v["issues"] if i["severity"] == "error"]
    assert (1, None) in errors and (2, "messages[0].role") in errors
    assert r.json()["token_stats"] is None  # no model asked for


def test_report_with_a_model_has_token_stats_and_finds_personal_data(client, tiny_model):
    lines = valid_lines(12)
    lines[3] = json.dumps({"messages": [{"role": "user", "content": "Write to jane.doe@example.com"},
                                        {"role": "assistant", "content": "Done."}]})
    fid = upload(client, lines)
    body = client.get(f"/v1/tunery/files/{fid}/report", params={"model": "tiny-random", "n_epochs": 2}).json()
    assert body["validation"]["ok"] is True and body["file"]["id"] == fid
    stats = body["token_stats"]
    assert stats["model"] == "tiny-random" and stats["n_examples"] == 12 and stats["n_epochs"] == 2
    assert stats["billed_tokens"] == 2 * stats["total_tokens"] > stats["trained_tokens"] > 0
    assert stats["n_epochs_auto"] is False
    assert body["pii"]["counts"] == {"EMAIL": 1} and body["pii"]["lines_with_pii"] == [4]
    assert body["pii"]["findings"][0] == {"line": 4, "field": "messages[0].content", "kind": "EMAIL",
                                          "text": "jane.doe@example.com"}
    auto = client.get(f"/v1/tunery/files/{fid}/report", params={"model": "tiny-random"}).json()["token_stats"]
    assert auto["n_epochs_auto"] is True and auto["n_epochs"] == 9  # 12 examples: auto picks ceil(100/12)


def test_report_of_preference_pairs_estimates_with_dpo_auto_epochs(client, tiny_model):
    """60 pairs: a DPO job's auto trains 2 epochs (supervised auto would take 3)."""
    pairs = [json.dumps({"input": {"messages": [{"role": "user", "content": f"Is Lisbon nice in month {i}?"}]},
                         "preferred_output": [{"role": "assistant", "content": "Yes, mild and sunny. When do you go?"}],
                         "non_preferred_output": [{"role": "assistant", "content": "I can't help with that."}]})
             for i in range(60)]
    fid = upload(client, pairs, name="pairs.jsonl")
    stats = client.get(f"/v1/tunery/files/{fid}/report", params={"model": "tiny-random"}).json()["token_stats"]
    assert stats["n_examples"] == 60 and stats["n_epochs_auto"] is True and stats["n_epochs"] == 2
    chat = upload(client, valid_lines(60))
    assert client.get(f"/v1/tunery/files/{chat}/report",
                      params={"model": "tiny-random"}).json()["token_stats"]["n_epochs"] == 3


def test_report_errors_are_openai_error_objects(client, tiny_model):
    r = client.get("/v1/tunery/files/file-nope/report")
    assert r.status_code == 404 and "file-nope" in r.json()["error"]["message"]
    fid = upload(client, valid_lines(12))
    r = client.get(f"/v1/tunery/files/{fid}/report", params={"model": "no-such-model"})
    assert r.status_code == 404 and "no-such-model" in r.json()["error"]["message"]
    r = client.get(f"/v1/tunery/files/{fid}/report", params={"purpose": "testing"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "purpose"
    r = client.get(f"/v1/tunery/files/{fid}/report", params={"n_epochs": 0})
    assert r.status_code == 400 and r.json()["error"]["param"] == "n_epochs"


def test_job_metrics_are_listed_and_unknown_jobs_are_404(client, tiny_model):
    from tunery.jobs import create_job, store

    fid = upload(client, valid_lines(12))
    job = create_job(model="tiny-random", training_file=fid)
    assert client.get(f"/v1/tunery/fine_tuning/jobs/{job['id']}/metrics").json() == {"object": "list", "data": []}
    store.add_event(job["id"], "Step 1/2", type="metrics", data={"step": 1, "train_loss": 2.5, "total_steps": 2})
    store.add_event(job["id"], "Step 2/2", type="metrics", data={"step": 2, "train_loss": 2.0, "total_steps": 2})
    rows = client.get(f"/v1/tunery/fine_tuning/jobs/{job['id']}/metrics").json()["data"]
    assert [(r["step"], r["train_loss"]) for r in rows] == [(1, 2.5), (2, 2.0)]
    r = client.get("/v1/tunery/fine_tuning/jobs/ftjob-nope/metrics")
    assert r.status_code == 404 and r.json()["error"]["param"] == "fine_tuning_job_id"


def test_travel_questions_start_with_the_exercise_and_carry_the_system_message(client):
    body = client.get("/v1/tunery/examples/travel/questions").json()
    assert body["exercise_questions"] == 5
    assert body["data"][0] == {"index": 0, "question": "Where in Rome should I stay?", "exercise": True}
    assert [q["exercise"] for q in body["data"]].count(True) == 5 and len(body["data"]) == 66
    assert body["system"].startswith("You are an AI travel assistant")


def test_info_says_whether_a_worker_runs(client):
    body = client.get("/v1/tunery/info").json()
    assert body["worker"] is False and body["api_keys"] is False and body["version"]


def _python_flow(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "flow.dag.yaml").write_text(
        "inputs:\n  text:\n    type: string\noutputs:\n  answer:\n    type: string\n    reference: ${up.output}\n"
        "nodes:\n- name: up\n  type: python\n  source: {type: code, path: up.py}\n  inputs:\n    text: ${inputs.text}\n")
    (root / "up.py").write_text("from promptflow.core import tool\n\n\n@tool\ndef up(text: str) -> str:\n"
                                "    return text.upper()\n")
    return root


def test_runs_are_listed_and_compared_as_json_and_html(client, tmp_path):
    from tunery.flows import RunSpec, create_run

    flow = _python_flow(tmp_path / "upper")
    data = tmp_path / "data.jsonl"
    data.write_text('{"text": "rome"}\n{"text": "oslo"}\n')
    for name in ("upper_a", "upper_b"):
        create_run(RunSpec(flow=str(flow), data=str(data), name=name))
    runs = client.get("/v1/tunery/runs").json()["data"]
    assert {r["name"] for r in runs} == {"upper_a", "upper_b"} and all("path" not in r for r in runs)
    cmp = client.get("/v1/tunery/runs/compare", params={"names": "upper_a,upper_b"}).json()
    assert [r["name"] for r in cmp["runs"]] == ["upper_a", "upper_b"]
    assert cmp["lines"][0]["runs"]["upper_a"]["outputs"] == {"answer": "ROME"}
    page = client.get("/v1/tunery/runs/compare.html", params={"names": "upper_a,upper_b"})
    assert page.headers["content-type"].startswith("text/html") and "OSLO" in page.text
    r = client.get("/v1/tunery/runs/compare", params={"names": " , "})
    assert r.status_code == 400 and r.json()["error"]["param"] == "names"
    assert client.get("/v1/tunery/runs/compare", params={"names": "nope"}).status_code == 404


def test_extensions_want_the_api_key_but_pages_do_not():
    client = TestClient(create_app(api_keys=["k1"]))
    assert client.get("/playground").status_code == 200
    assert client.get("/studio/static/js/ui.js").status_code == 200
    r = client.get("/v1/tunery/examples/travel/questions")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    ok = client.get("/v1/tunery/examples/travel/questions", headers={"Authorization": "Bearer k1"})
    assert ok.status_code == 200
    assert client.get("/v1/tunery/info", headers={"Authorization": "Bearer k1"}).json()["api_keys"] is True
