"""Reading a user's text files (chat JSONL, question and data files, topic lists): piece by piece,
with the same named error wherever a line is not UTF-8 (``path, line N: not valid UTF-8 (byte
0xe9 at column 18)``), a byte-order mark at the start accepted, and a bound on how long a line the
validator reads."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from tunery.errors import Conflict, InvalidInput

BOM = b"\xef\xbb\xbf"  # a UTF-8 byte-order mark, dropped from a file's first line

MAX_LINE_BYTES = 8 << 20
"""The longest line the validator reads (8 MiB): a longer one is an error, skipped unread, so one
line never takes more memory than this. No model's context holds an example that long."""
_HINT_MAX_BYTES = 16 << 20  # a file up to this size is parsed whole to recognise a pretty-printed document
UTF16 = "the file is UTF-16 encoded: save it as UTF-8"


def refuse_existing(outputs: list[Path], *, force: bool, hint: str) -> None:
    """Outputs that exist are replaced only when asked (``force``): a Conflict names them, with
    ``hint`` (how to choose another name); ``or pass --force to replace ...`` is added."""
    existing = [str(out) for out in outputs if out.exists()]
    if existing and not force:
        raise Conflict(f"{' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''}", param="output",
                       hint=f"{hint}, or pass --force to replace " + ("it" if len(existing) == 1 else "them"))


def line_too_long(n: int) -> str:
    """Why a line of ``n`` bytes (over :data:`MAX_LINE_BYTES`) is skipped unread."""
    return (f"the line is {n:,} bytes, longer than the {MAX_LINE_BYTES:,} a line may hold: no model's context "
            "holds an example that long")


def is_utf16(first: bytes) -> bool:
    """Whether a file whose first line is ``first`` is UTF-16 text: a UTF-16 byte-order mark, or
    (without one) an ASCII character and a zero byte in either order, as ``{"`` is written in
    UTF-16. Read as UTF-8, such a file is text with a zero byte between its letters, in which no
    JSON parses and no pattern matches."""
    if first.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    head = first[:4]
    return len(head) == 4 and (all(head[i] and head[i] < 0x80 and not head[i + 1] for i in (0, 2))
                               or all(not head[i] and head[i + 1] and head[i + 1] < 0x80 for i in (0, 2)))


def refuse_utf16(path: str | Path, first: bytes, *, param: str = "file") -> None:
    """Raise an InvalidInput naming ``path`` when its first line says it is UTF-16 (:func:`is_utf16`)."""
    if is_utf16(first):
        raise InvalidInput(f"{path}: {UTF16}", param=param)


def decode_line(raw: bytes) -> tuple[str, None] | tuple[None, str]:
    """A line's text, or why it is not UTF-8 (its first bad byte): one wording wherever tunery
    reads a user's text file."""
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as e:
        return None, f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}): save the file as UTF-8"


def _cannot_read(path: Path, e: OSError, param: str) -> InvalidInput:
    if isinstance(e, FileNotFoundError):
        return InvalidInput(f"file not found: {path}", param=param)
    if isinstance(e, IsADirectoryError):
        return InvalidInput(f"{path} is a folder, not a JSONL file", param=param)
    return InvalidInput(f"cannot read {path}: {e.strerror or e}", param=param)


def read_data(path: str | Path) -> bytes:
    """A data file's bytes, or an InvalidInput that says why it cannot be read."""
    path = Path(path)
    try:
        return path.read_bytes()
    except OSError as e:
        raise _cannot_read(path, e, "file") from None


@contextmanager
def open_data(path: str | Path, *, param: str = "file") -> Iterator[BinaryIO]:
    """A data file open for reading bytes, or an InvalidInput that says why it cannot be."""
    path = Path(path)
    try:
        f = path.open("rb")
    except OSError as e:
        raise _cannot_read(path, e, param) from None
    with f:
        yield f


def file_lines(f: BinaryIO, limit: int | None = MAX_LINE_BYTES) -> Iterator[bytes | int]:
    """Each line of ``f`` without its ``\\n``, read piece by piece; a line longer than ``limit``
    bytes is skipped unread and its length given instead."""
    while raw := (f.readline() if limit is None else f.readline(limit + 1)):
        if raw.endswith(b"\n"):
            yield raw[:-1]
        elif limit is None or len(raw) <= limit:
            yield raw
        else:
            n = len(raw)
            while (piece := f.readline(1 << 20)) and not piece.endswith(b"\n"):
                n += len(piece)
            yield n + max(len(piece) - 1, 0)


def byte_lines(data: bytes, limit: int | None = MAX_LINE_BYTES) -> Iterator[bytes | int]:
    """:func:`file_lines` of bytes in memory (``data.split(b"\\n")`` without the list of every line)."""
    start, size = 0, len(data)
    while start < size:
        end = data.find(b"\n", start)
        end = size if end < 0 else end
        yield data[start:end] if limit is None or end - start <= limit else end - start
        start = end + 1


def read_lines(path: str | Path, *, param: str = "file") -> Iterator[tuple[int, str]]:
    """The lines of a user's UTF-8 text file (JSONL, CSV, a list of topics), numbered from 1 and
    read piece by piece, without their line endings and without a byte-order mark at the start.
    A line that is not UTF-8 (or a UTF-16 file) raises an InvalidInput naming the file, the line and
    the byte."""
    for n, text, _ in raw_lines(path, param=param):
        yield n, text


def raw_lines(path: str | Path, *, param: str = "file") -> Iterator[tuple[int, str, bytes]]:
    """:func:`read_lines` with each line's bytes as read (a ``\\r`` before its ``\\n`` and, on the
    first, a byte-order mark kept), for a writer that keeps the file's own form."""
    with open_data(path, param=param) as f:
        for n, raw in enumerate(file_lines(f, None), 1):
            if n == 1:
                refuse_utf16(path, raw, param=param)
            text, problem = decode_line((raw.removeprefix(BOM) if n == 1 else raw).removesuffix(b"\r"))
            if problem is not None:
                raise InvalidInput(f"{path}, line {n}: {problem}", param=param)
            yield n, text, raw


def check_utf8(path: str | Path, *, param: str = "file") -> None:
    """Raise :func:`read_lines`'s error when ``path`` is not UTF-8 text (for readers that decode
    the file themselves, such as ``csv``, and only say that something somewhere was not UTF-8)."""
    for _ in read_lines(path, param=param):
        pass


def read_text(path: str | Path, *, param: str = "file") -> str:
    """The whole text of a small UTF-8 file (a flow's YAML, a template, ``run.yml``,
    ``connections.yaml``) as written, line endings kept. A file that is not UTF-8 (UTF-16, a
    Latin-1 byte in a comment) raises :func:`read_lines`'s InvalidInput naming the file, the line
    and the byte."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        check_utf8(path, param=param)  # raises, naming the line and byte (or that the file is UTF-16)
        raise


def small_file(path: Path) -> bytes | None:
    """The bytes of a file small enough to parse at once, else None. A pipe (standard input) is
    None: it could not be read again, and its size is not known."""
    try:
        return path.read_bytes() if path.is_file() and path.stat().st_size <= _HINT_MAX_BYTES else None
    except OSError:
        return None
