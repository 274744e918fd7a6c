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


def test_deleting_files_while_paging_through_them(client):
    """The SDK's cleanup loop asks for each next page after a file it has just deleted: that file
    still marks where the page starts, in either order and under a purpose filter."""
    for order in ("asc", "desc"):
        ids = [client.files.create(file=(f"f{i}.jsonl", io.BytesIO(b"{}\n")), purpose="fine-tune").id for i in range(5)]
        seen = []
        for f in client.files.list(limit=2, order=order, purpose="fine-tune"):
            seen.append(f.id)
            client.files.delete(f.id)
        assert seen == (ids if order == "asc" else ids[::-1])
        assert client.files.list().data == []
    with pytest.raises(openai.BadRequestError, match="not one of purpose 'evals'"):
        client.files.list(after=seen[0], purpose="evals")


def test_oversized_upload_through_the_sdk(client, monkeypatch):
    from tunery.data import files

    monkeypatch.setattr(files, "MAX_FILE_BYTES", 100)
    with pytest.raises(openai.APIStatusError) as e:
        client.files.create(file=("big.jsonl", io.BytesIO(b"x" * 1000)), purpose="fine-tune")
    assert e.value.status_code == 413 and e.value.body["code"] == "file_too_large"


def test_a_file_an_unfinished_job_reads_is_not_deleted(http, tiny_model, training_file):
    with training_file.open("rb") as f:
        file_id = http.post("/v1/files", data={"purpose": "fine-tune"}, files={"file": ("t.jsonl", f)}).json()["id"]
    job = http.post("/v1/fine_tuning/jobs", json={"model": "tiny-random", "training_file": file_id}).json()
    r = http.delete(f"/v1/files/{file_id}")
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["param"] == "file_id" and err["code"] == "conflict" and job["id"] in err["message"]
    assert http.get(f"/v1/files/{file_id}/content").content == training_file.read_bytes()
    assert http.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel").status_code == 200
    assert http.delete(f"/v1/files/{file_id}").json()["deleted"] is True


def test_listing_an_unknown_purpose_or_after_is_a_400_naming_it(client, http):
    ids = [client.files.create(file=(f"f{i}.jsonl", io.BytesIO(b"{}\n")), purpose="fine-tune").id for i in range(2)]
    r = http.get("/v1/files", params={"purpose": "bogus"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "purpose" and "'bogus'" in r.json()["error"]["message"]
    assert client.files.list(purpose="vision").data == []  # OpenAI's, written only by its own services
    for params in ({"after": "file-nope"}, {"after": ids[0], "purpose": "evals"}):
        r = http.get("/v1/files", params=params)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "after" and params["after"] in r.json()["error"]["message"]


def test_a_purpose_given_twice_is_refused(http, tunery_home):
    body = (b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
            b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.jsonl"\r\n\r\n{}\n\r\n--b--\r\n')
    r = http.post("/v1/files", content=body, headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "purpose", r.text
    assert "more than once" in r.json()["error"]["message"]
    assert http.get("/v1/files").json()["data"] == []
    assert not list((tunery_home / "files").iterdir())


@pytest.mark.parametrize("name", ["..", ".", "../..", "..\\..\\evil.jsonl"])
def test_a_dot_or_backslash_filename_is_only_a_label(http, name):
    r = http.post("/v1/files", data={"purpose": "fine-tune"}, files={"file": (name, b"{}\n")})
    assert r.status_code == 200, r.text
    label = "evil.jsonl" if name.endswith("evil.jsonl") else "upload.jsonl"
    assert r.json()["filename"] == label
    served = http.get(f"/v1/files/{r.json()['id']}/content").headers["content-disposition"]
    assert ".." not in served and label in served


def test_an_expiry_is_refused_not_ignored(client, tunery_home):
    """OpenAI deletes a file whose `expires_after` has passed; tunery keeps files until deleted, so
    asking for an expiry is a 400 naming it, and nothing is stored."""
    with pytest.raises(openai.BadRequestError, match="do not expire") as e:
        client.files.create(file=("f.jsonl", io.BytesIO(b"{}\n")), purpose="fine-tune",
                            expires_after={"anchor": "created_at", "seconds": 3600})
    assert e.value.body["param"] == "expires_after"
    assert client.files.list().data == []
