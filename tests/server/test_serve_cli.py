"""`tunery serve` as a real subprocess, and the `deploy` / `deployments` commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import openai
import pytest
from click.testing import CliRunner

from tunery.cli.main import cli
from tunery.server.run import free_port


def tunery(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tunery.cli.main", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ}, **kw)


def test_tunery_serve_subprocess_with_a_key(tiny_model, tmp_path):
    port = free_port()
    env = {**os.environ, "TUNERY_API_KEY": "k1,k2"}
    proc = subprocess.Popen([sys.executable, "-m", "tunery.cli.main", "serve", "--port", str(port), "--no-worker",
                             "--api-key", "k3", "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "tunery serve did not come up"
            time.sleep(0.2)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k3", max_retries=0)
        assert "tiny-random" in [m.id for m in client.models.list()]
        r = client.chat.completions.create(model="tiny-random", messages=[{"role": "user", "content": "hi"}],
                                           max_tokens=3)
        assert r.usage.completion_tokens >= 1
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 401
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": "Bearer k1"}).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert f"http://127.0.0.1:{port}/v1" in out and "3 required" in out


def test_serve_on_a_busy_port_is_one_clear_line(tunery_home):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = tunery("serve", "--port", str(s.getsockname()[1]), "--no-worker")
    assert r.returncode == 1
    assert "cannot listen on" in r.stderr and "--port" in r.stderr and "Traceback" not in r.stderr


def test_deploy_list_show_delete(tiny_model):
    runner = CliRunner()
    r = runner.invoke(cli, ["deploy", "tiny-random", "--name", "travel", "--tpm", "5000",
                            "--content-filter", "strict", "--block", "red door"])
    assert r.exit_code == 0, r.output
    assert "travel" in r.output and "5000 tokens/minute" in r.output
    r = runner.invoke(cli, ["deployments", "list", "--json"])
    assert [(d["name"], d["tpm"], d["content_filter"], d["blocklist"]) for d in json.loads(r.output)] == \
        [("travel", 5000, "strict", ["red door"])]
    assert json.loads(runner.invoke(cli, ["deployments", "show", "travel"]).output)["model"] == "tiny-random"
    assert "tiny-random" in runner.invoke(cli, ["deployments", "list"]).output
    assert runner.invoke(cli, ["deployments", "delete", "travel"]).exit_code == 0
    assert "No deployments" in runner.invoke(cli, ["deployments", "list"]).output


@pytest.mark.parametrize("manifest,needle", [
    ("{bad", "tunery-export.json, line 1: not valid JSON"),
    ('{"format": "onnx"}', "tunery-export.json: field 'quantize' is missing; field 'source_model' is missing"),
    ('{"format": "onnx", "quantize": "int4", "source_model": 7}', "field 'source_model' must be a non-empty string"),
    ("[1]", "tunery-export.json must hold a JSON object, not a list"),
])
def test_deploy_names_the_field_of_a_damaged_export_manifest(tmp_path, manifest, needle):
    from tunery.errors import InvalidInput

    (tmp_path / "tunery-export.json").write_text(manifest)
    r = CliRunner().invoke(cli, ["deploy", str(tmp_path), "--name", "e1"])
    assert isinstance(r.exception, InvalidInput) and needle in str(r.exception) and str(tmp_path) in str(r.exception)


@pytest.mark.parametrize("args", [["--name", "tiny-random"], ["--name", "ft:mine"],
                                  ["--name", "e1", "--precision", "fp32"]])
def test_a_refused_deploy_of_an_export_folder_registers_no_model(tiny_model, tmp_path, args):
    """The folder was registered as a model before the deployment was refused: the model stayed,
    named by tunery, and `tunery export --force` then refused the folder as served."""
    from tunery.errors import TuneryError
    from tunery.export import register_export
    from tunery.models import list_models

    (tmp_path / "tunery-export.json").write_text('{"format": "onnx", "quantize": "int8", "source_model": "tiny-random"}')
    r = CliRunner().invoke(cli, ["deploy", str(tmp_path), *args])
    assert isinstance(r.exception, TuneryError), r.output
    assert [m.id for m in list_models()] == ["tiny-random"] and tmp_path.is_dir()
    register_export(tmp_path)  # registered already, by a deploy that worked: a refused one keeps it
    assert CliRunner().invoke(cli, ["deploy", str(tmp_path), *args]).exception is not None
    assert [m.id for m in list_models()] == ["tiny-random", "tiny-random-onnx-int8"]


@pytest.mark.parametrize("args,needle", [
    (["deploy", "no-such-model", "--name", "x"], "unknown model"),
    (["deploy", "tiny-random", "--name", "bad name"], "invalid deployment name"),
    (["deploy", "tiny-random", "--name", "x", "--tpm", str(2**64)], "tpm must be a whole number"),  # not OverflowError
    (["deployments", "delete", "nope"], "no deployment named"),
])
def test_deploy_errors_are_one_line(tiny_model, args, needle):
    r = tunery(*args)
    assert r.returncode == 1 and needle in r.stderr and "Traceback" not in r.stderr
