"""Listing jobs as OpenAI lists them: newest first, paged, and filtered by metadata (every pair
given must match; ``{}``, OpenAI's ``metadata=null``, keeps the jobs without), on both state
databases."""

from __future__ import annotations

from tunery.data import files
from tunery.jobs import create_job, list_jobs


def test_jobs_are_filtered_by_metadata(backend, tiny_model, chat_file):
    train = files.create_from_path(chat_file(12)).id
    a = create_job(model="tiny-random", training_file=train, metadata={"team": "a"})["id"]
    b = create_job(model="tiny-random", training_file=train, metadata={"team": "b", "run": "1"})["id"]
    quote = create_job(model="tiny-random", training_file=train, metadata={'it"s': "b'; --"})["id"]
    plain = create_job(model="tiny-random", training_file=train)["id"]

    def ids(metadata) -> list[str]:
        return [j["id"] for j in list_jobs(metadata=metadata)[0]]

    assert ids(None) == [plain, quote, b, a]
    assert ids({"team": "a"}) == [a]
    assert ids({"team": "b", "run": "1"}) == [b]
    assert ids({"team": "b", "run": "2"}) == []
    assert ids({'it"s': "b'; --"}) == [quote]  # keys and values are parameters, never SQL
    assert ids({}) == [plain]
    page, more = list_jobs(metadata={"team": "b"}, limit=1)
    assert [j["id"] for j in page] == [b] and not more


def test_the_cli_lists_jobs_by_status_and_metadata(tiny_model, chat_file):
    from click.testing import CliRunner

    from tunery.cli.main import cli
    from tunery.jobs import cancel_job

    train = files.create_from_path(chat_file(12)).id
    a = create_job(model="tiny-random", training_file=train, metadata={"team": "a"})["id"]
    b = create_job(model="tiny-random", training_file=train, metadata={"team": "b"})["id"]
    cancel_job(b)

    def listed(*args) -> str:
        r = CliRunner().invoke(cli, ["jobs", "list", "--json", *args])
        assert r.exit_code == 0, r.output
        return r.output

    assert a in listed("--metadata", "team=a") and b not in listed("--metadata", "team=a")
    assert b in listed("--status", "cancelled") and a not in listed("--status", "cancelled")
    r = CliRunner().invoke(cli, ["jobs", "list", "--metadata", "team"])
    assert r.exit_code == 2 and "'team' is not KEY=VALUE" in r.output
