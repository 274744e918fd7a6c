"""Malformed datasets (``support_datasets``) through ``tunery data validate`` and ``stats`` and
through the upload, its report and a job: no traceback, ``validate`` exits 1 naming every broken
line, no 5xx, every error an OpenAI error object, every job ends failed with a reason that names
the lines. Here 30 files; ``benchmarks/reliability.py --datasets 200`` runs the full scale."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from support_datasets import check_cli, check_job, datasets, upload_all

from tunery.cli.main import cli

pytestmark = pytest.mark.reliability

N = 30


@pytest.fixture
def app_client(tiny_model):
    from fastapi.testclient import TestClient

    from tunery.server.app import create_app

    with TestClient(create_app(allowed_hosts=["testserver"]), raise_server_exceptions=False) as c:
        yield c


def test_malformed_datasets_through_the_cli(tiny_model, tmp_path):
    failures, runner = [], CliRunner()
    for ds in datasets(N, seed=21):
        path = tmp_path / ds.name
        path.write_bytes(ds.content)
        for command, extra in (("validate", []), ("stats", ["--model", "tiny-random"])):
            r = runner.invoke(cli, ["data", command, str(path), *extra])
            if (bad := check_cli(ds, command, r.exit_code, r.output, r.exception)) is not None:
                failures.append(bad)
    assert not failures, "\n".join(failures)


def test_malformed_datasets_through_upload_report_and_job(app_client):
    from tunery.jobs import Worker, get_job

    failures, jobs = upload_all(datasets(N, seed=22), app_client)
    Worker().run_once()  # validates every new job, in this round
    for ds, job_id in jobs:
        if (bad := check_job(ds, get_job(job_id))) is not None:
            failures.append(bad)
    assert not failures, "\n".join(failures)
    assert len(jobs) >= N // 2  # most got as far as a job
    assert app_client.get("/v1/models").status_code == 200  # the server is alive
