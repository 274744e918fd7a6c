"""/v1/files through the openai SDK: stored by id under TUNERY_HOME, never by the client's name."""

from __future__ import annotations

import io

import openai
import pytest


def test_upload_list_retrieve_content_delete(client, tunery_home, training_file):
    f = client.files.create(file=training_file.open("rb"), purpose="fine-tune")
    assert f.id.startswith("file-") and f.purpose == "fine-tune" and f.filename == "train.jsonl"
    assert f.bytes == training_file.stat().st_size
    assert (tunery_home / "files" / f.id).read_bytes() == training_file.read_bytes()
    assert [x.id for x in client.files.list()] == [f.id]
    assert [x.id for x in client.files.list(purpose="evals")] == []
    assert client.files.retrieve(f.id).bytes == f.bytes
    assert client.files.content(f.id).read() == training_file.read_bytes()
    deleted = client.files.delete(f.id)
    assert deleted.deleted and deleted.id == f.id
    assert not (tunery_home / "files" / f.id).exists()
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(f.id)


def test_a_hostile_filename_is_only_a_label(client, tunery_home):
    f = client.files.create(file=("../../../etc/evil.jsonl", io.BytesIO(b'{"a": 1}\n')), purpose="fine-tune")
    assert f.filename == "evil.jsonl"
    assert sorted(p.name for p in (tunery_home / "files").iterdir()) == [f.id]
    assert not (tunery_home.parent / "etc").exists()


def test_listing_pages_with_after(client):
    ids = [client.files.create(file=(f"f{i}.jsonl", io.BytesIO(b"{}\n")), purpose="fine-tune").id for i in range(3)]
    page = client.files.list(limit=2, order="asc")
    assert [f.id for f in page.data] == ids[:2] and page.has_more
    assert [f.id for f in client.files.list(limit=2, order="asc", after=ids[1]).data] == ids[2:]
    assert [f.id for f in client.files.list(order="asc")] == ids  # the SDK follows the pages itself


def test_oversized_upload_through_the_sdk(client, monkeypatch):
    from tunery.data import files

    monkeypatch.setattr(files, "MAX_FILE_BYTES", 100)
    with pytest.raises(openai.APIStatusError) as e:
        client.files.create(file=("big.jsonl", io.BytesIO(b"x" * 1000)), purpose="fine-tune")
    assert e.value.status_code == 413 and e.value.body["code"] == "file_too_large"
