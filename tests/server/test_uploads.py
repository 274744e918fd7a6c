"""Uploads to /v1/files are streamed to disk: memory stays flat for a file of any size, the size
limit holds for chunked bodies that declare no length, and a refused or broken upload leaves no
file behind."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator

import pytest
from test_errors import assert_error

BOUNDARY = "tunery-test-boundary"
LINE = b'{"messages": [{"role": "user", "content": "Where should I go in May?"}, {"role": "assistant", "content": "Lisbon: mild and bright."}]}\n'


def multipart(chunks: Iterator[bytes], *, purpose: str = "fine-tune", name: str = "big.jsonl") -> Iterator[bytes]:
    """A multipart/form-data body as a generator, so httpx sends it chunked, with no Content-Length."""
    yield (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n{purpose}\r\n"
           f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
           "Content-Type: application/octet-stream\r\n\r\n").encode()
    yield from chunks
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


HEADERS = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """The highest resident set size of this process (server thread included) while in the block."""

    def __enter__(self) -> PeakRss:
        self.base = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def added(self) -> int:
        return self.peak - self.base


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads the RSS from /proc")
def test_a_200_mb_chunked_upload_adds_little_memory(http, tunery_home):
    size = 200 << 20
    block = LINE * ((1 << 20) // len(LINE))
    digest = hashlib.sha256()

    def chunks() -> Iterator[bytes]:
        sent = 0
        while sent < size:
            piece = block[: size - sent]
            digest.update(piece)
            sent += len(piece)
            yield piece

    started = time.monotonic()
    with PeakRss() as mem:
        r = http.post("/v1/files", content=multipart(chunks()), headers=HEADERS)
    assert r.status_code == 200, r.text
    f = r.json()
    assert f["bytes"] == size and f["filename"] == "big.jsonl" and f["purpose"] == "fine-tune"
    stored = tunery_home / "files" / f["id"]
    on_disk = hashlib.sha256()
    with stored.open("rb") as fh:
        while piece := fh.read(1 << 20):
            on_disk.update(piece)
    assert on_disk.hexdigest() == digest.hexdigest()
    assert sorted(p.name for p in stored.parent.iterdir()) == [f["id"]]  # no temporary file left
    print(f"200 MB upload: {time.monotonic() - started:.1f} s, {mem.added / 2**20:.0f} MB added RSS")
    assert mem.added < 200 << 20, f"the upload added {mem.added / 2**20:.0f} MB to the server's memory"


def test_an_over_limit_chunked_upload_is_413_and_leaves_nothing(http, tunery_home, monkeypatch):
    from tunery.data import files

    monkeypatch.setattr(files, "MAX_FILE_BYTES", 10_000)
    body = multipart(iter([LINE] * 200))  # about 24 kB, chunked: no Content-Length to refuse it by
    r = http.post("/v1/files", content=body, headers=HEADERS)
    err = assert_error(r, 413, param="file", code="file_too_large")
    assert "10000-byte upload limit" in err["message"] and "TUNERY_MAX_FILE_BYTES" in err["message"]
    assert files.list_files() == []
    folder = tunery_home / "files"
    assert not folder.exists() or list(folder.iterdir()) == []
    # just under the limit still fits
    r = http.post("/v1/files", content=multipart(iter([LINE] * 10)), headers=HEADERS)
    assert r.status_code == 200 and r.json()["bytes"] == 10 * len(LINE)


@pytest.mark.parametrize("body,param,needle", [
    (b"--" + BOUNDARY.encode() + b"\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jsonl\"\r\n\r\n"
     + LINE, "file", "ended before its closing boundary"),  # the client stopped mid-file
    (b"--" + BOUNDARY.encode() + b"\r\nContent-Disposition: form-data\r\n\r\nx\r\n--" + BOUNDARY.encode() + b"--\r\n",
     "file", '"name"'),
    (b"this is not multipart", "file", "multipart body"),
])
def test_a_broken_multipart_body_is_400_and_leaves_nothing(http, tunery_home, body, param, needle):
    from tunery.data import files

    r = http.post("/v1/files", content=body, headers=HEADERS)
    err = assert_error(r, 400, param=param)
    assert needle in err["message"]
    assert files.list_files() == []
    folder = tunery_home / "files"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_a_bad_purpose_is_400_and_leaves_nothing(http, tunery_home):
    from tunery.data import files

    r = http.post("/v1/files", content=multipart(iter([LINE] * 10), purpose="homework"), headers=HEADERS)
    assert_error(r, 400, param="purpose")
    assert files.list_files() == []
    folder = tunery_home / "files"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_two_file_parts_are_refused(http):
    r = http.post("/v1/files", data={"purpose": "fine-tune"},
                  files=[("file", ("a.jsonl", LINE)), ("file", ("b.jsonl", LINE))])
    err = assert_error(r, 400, param="file")
    assert "one file per request" in err["message"]


def test_the_store_writes_in_pieces_and_cleans_up(tunery_home, monkeypatch):
    from tunery.data import files

    with files.FileWriter() as w:
        for _ in range(3):
            w.write(LINE)
        rec = w.commit("x.jsonl", "fine-tune")
    assert rec.bytes == 3 * len(LINE) and rec.path.read_bytes() == LINE * 3
    with pytest.raises(files.InvalidInput, match="purpose"), files.FileWriter() as w:
        w.write(LINE)
        w.commit("x.jsonl", "homework")
    monkeypatch.setattr(files, "MAX_FILE_BYTES", len(LINE))
    with pytest.raises(files.FileTooLarge), files.FileWriter() as w:
        w.write(LINE)
        w.write(b"x")
    assert sorted(p.name for p in (tunery_home / "files").iterdir()) == [rec.id]
    assert [r.id for r in files.list_files()] == [rec.id]
