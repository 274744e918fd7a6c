"""``/v1/files``: multipart uploads (streamed to disk as they arrive, size-limited while streaming,
stored by id under TUNERY_HOME, never by the client's filename), listing, metadata, content and
deletion."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from tunery.data import files as store
from tunery.errors import InvalidInput

router = APIRouter()

_CHUNK = 1 << 20
"""File bytes are handed to the disk in pieces of about this size (one thread hop each)."""
_FORM_OVERHEAD = 1 << 20
"""What a body may hold beyond the file itself: boundaries, part headers, the small fields."""
_MAX_FIELDS = 8
_MAX_FIELD_BYTES = 64 << 10


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # what browsers send for non-UTF-8 names; never fail on a label


class _Form:
    """A multipart/form-data body parsed as it arrives, in constant memory: the bytes of the part
    named ``file`` wait in :attr:`pending` to be written, the small fields are kept, and any other
    file part is skipped. Each limit is checked as soon as the bytes that break it are seen."""

    def __init__(self, boundary: bytes) -> None:
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.pending: list[bytes] = []
        self.pending_bytes = self.file_bytes = 0
        self.ended = False
        self._kind = ""  # of the part being read: "file", "field" or "skip"
        self._name = ""
        self._headers: dict[bytes, bytes] = {}
        self._header = self._value = b""
        self._data = bytearray()
        self._parser = MultipartParser(boundary, {
            "on_part_begin": self._part_begin, "on_part_data": self._part_data, "on_part_end": self._part_end,
            "on_header_field": self._header_field, "on_header_value": self._header_value,
            "on_header_end": self._header_end, "on_headers_finished": self._headers_finished,
            "on_end": self._end})

    def feed(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except MultipartParseError as e:
            raise InvalidInput(f"could not read the multipart body: {e}", param="file") from None

    def take(self) -> bytes:
        out = b"".join(self.pending)
        self.pending.clear()
        self.pending_bytes = 0
        return out

    def _part_begin(self) -> None:
        self._headers, self._data = {}, bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]
        if len(self._header) + len(self._value) > _MAX_FIELD_BYTES:
            raise InvalidInput("a part header of the multipart body is too long", param="file")

    def _header_end(self) -> None:
        self._headers[self._header.lower()] = self._value
        self._header = self._value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if b"name" not in options:
            raise InvalidInput('every part of the multipart body needs a Content-Disposition with a "name"',
                               param="file")
        self._name = _decode(options[b"name"])
        if b"filename" not in options:
            self._kind = "field"
            if self._name in self.fields:  # which one was meant is not ours to guess
                raise InvalidInput(f"the field {self._name!r} is given more than once in the multipart body; give "
                                   "it once", param=self._name)
            if len(self.fields) >= _MAX_FIELDS:
                raise InvalidInput(f"too many fields in the multipart body (at most {_MAX_FIELDS})", param="file")
        elif self._name != "file":
            self._kind = "skip"
        elif self.filename is not None:
            raise InvalidInput("send one file per request, in the part named 'file'", param="file")
        else:
            self._kind, self.filename = "file", _decode(options[b"filename"])

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._kind == "file":
            self.file_bytes += end - start
            if self.file_bytes > store.MAX_FILE_BYTES:
                raise store.too_large()
            self.pending.append(data[start:end])
            self.pending_bytes += end - start
        elif self._kind == "field":
            self._data += data[start:end]
            if len(self._data) > _MAX_FIELD_BYTES:
                raise InvalidInput(f"the field {self._name!r} is too long", param=self._name)

    def _part_end(self) -> None:
        if self._kind == "field":
            value = self.fields[self._name] = _decode(bytes(self._data))
            if self._name == "purpose" and value:
                store.check_purpose(value)  # refuse before the file is read, not after

    def _end(self) -> None:
        self.ended = True


@router.post("/files")
async def upload(request: Request) -> dict[str, Any]:
    limit = store.MAX_FILE_BYTES
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + _FORM_OVERHEAD:
        raise store.too_large()  # refuse before reading a body that cannot fit
    ctype, options = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or not options.get(b"boundary"):
        raise InvalidInput("upload files as multipart/form-data with fields 'file' and 'purpose'", param="file")
    form = _Form(options[b"boundary"])
    # the body goes to a temporary file beside its final place as it arrives; every disk and
    # database step runs in a thread, so other requests (streams above all) never wait on it
    writer = await run_in_threadpool(store.FileWriter)
    try:
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit + _FORM_OVERHEAD:  # a chunked body has no Content-Length to check first
                raise store.too_large()
            form.feed(chunk)
            if form.pending_bytes >= _CHUNK:
                await run_in_threadpool(writer.write, form.take())
        if form.pending:
            await run_in_threadpool(writer.write, form.take())
        if not form.ended:
            raise InvalidInput("the multipart body ended before its closing boundary", param="file")
        purpose = form.fields.get("purpose")
        if form.filename is None:
            raise InvalidInput("Missing required parameter: 'file' (a file part)", param="file")
        if not purpose:
            raise InvalidInput("Missing required parameter: 'purpose'", param="purpose")
        if not form.file_bytes:
            raise InvalidInput("the uploaded file is empty", param="file")
        if any(name.startswith("expires_after") for name in form.fields):
            # refused rather than ignored: a client that asked for its file to be deleted must not
            # find it kept
            raise InvalidInput("files here do not expire: tunery keeps a file until it is deleted",
                               param="expires_after",
                               hint="leave expires_after out, and delete the file (DELETE /v1/files/{id}, "
                                    "client.files.delete) when it is no longer needed")
        rec = await run_in_threadpool(writer.commit, form.filename or "upload.jsonl", purpose)
    finally:
        writer.discard()  # removes the temporary file unless committed; no await, so a cancel cannot skip it
    return rec.to_openai()


@router.get("/files")
def list_files(purpose: str | None = None, limit: int = Query(10000, ge=1, le=10000), after: str | None = None,
               order: Literal["asc", "desc"] = "desc") -> dict[str, Any]:
    recs = store.list_files(purpose, limit=limit + 1, after=after, order=order)
    data = [r.to_openai() for r in recs[:limit]]
    return {"object": "list", "data": data, "has_more": len(recs) > limit,
            "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}


@router.get("/files/{file_id}")
def get_file(file_id: str) -> dict[str, Any]:
    return store.get(file_id).to_openai()


@router.get("/files/{file_id}/content")
def file_content(file_id: str) -> FileResponse:
    rec = store.get(file_id)
    return FileResponse(rec.path, media_type="application/octet-stream", filename=rec.filename)


@router.delete("/files/{file_id}")
def delete_file(file_id: str) -> dict[str, Any]:
    rec = store.delete(file_id)
    return {"id": rec.id, "object": "file", "deleted": True}
