"""``/v1/files``: multipart uploads (size-limited, stored by id under TUNERY_HOME, never by the
client's filename), listing, metadata, content and deletion."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from starlette.datastructures import UploadFile

from tunery.data import files as store
from tunery.errors import InvalidInput
from tunery.server.errors import PayloadTooLarge

router = APIRouter()

_CHUNK = 1 << 20


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the file is larger than the {limit}-byte upload limit", param="file",
                           hint="split it, or raise TUNERY_MAX_FILE_BYTES on the server")


@router.post("/files")
async def upload(request: Request) -> dict[str, Any]:
    limit = store.MAX_FILE_BYTES
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + _CHUNK:
        raise _too_large(limit)  # refuse before reading a body that cannot fit
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidInput("upload files as multipart/form-data with fields 'file' and 'purpose'", param="file")
    try:
        form = await request.form(max_files=1, max_fields=8)
    except Exception as e:  # starlette raises its own errors for malformed multipart bodies
        raise InvalidInput(f"could not read the multipart body: {getattr(e, 'detail', e)}", param="file") from e
    try:
        upload = form.get("file")
        purpose = form.get("purpose")
        if not isinstance(upload, UploadFile):
            raise InvalidInput("Missing required parameter: 'file' (a file part)", param="file")
        if not isinstance(purpose, str) or not purpose:
            raise InvalidInput("Missing required parameter: 'purpose'", param="purpose")
        data = bytearray()
        while chunk := await upload.read(_CHUNK):
            data += chunk
            if len(data) > limit:
                raise _too_large(limit)
        if not data:
            raise InvalidInput("the uploaded file is empty", param="file")
        rec = store.create(bytes(data), upload.filename or "upload.jsonl", purpose)
    finally:
        await form.close()
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
