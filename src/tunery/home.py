"""The one home folder for all state (``TUNERY_HOME``, default ``~/.tunery``) and atomic writes."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import stat
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def from_env(cls) -> Home:
        root = os.environ.get("TUNERY_HOME") or str(Path.home() / ".tunery")
        return cls(Path(root).expanduser().resolve())

    @property
    def db_path(self) -> Path:
        return self.root / "tunery.db"

    @property
    def files(self) -> Path:
        return self.root / "files"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def jobs(self) -> Path:
        return self.root / "jobs"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    def ensure(self) -> Home:
        # a new home is the user's alone (uploaded data may be personal): its files get the umask's
        # mode, as any file does, and this folder keeps others out of them all
        if not self.root.exists():
            self.root.mkdir(parents=True, mode=0o700, exist_ok=True)
        for p in (self.files, self.models, self.jobs, self.runs, self.cache, self.reports):
            p.mkdir(parents=True, exist_ok=True)
        return self


def home() -> Home:
    """The current home, created on first use (re-read from the environment on every call)."""
    return Home.from_env().ensure()


class CannotWrite(OSError):
    """A file or folder cannot be created where it was asked for: a parent is a file, the folder
    cannot be written, or the path is a folder. Its message names the path and why; it stays an
    OSError for callers that tolerate a read-only place (a cache), and the CLI shows it as is."""

    def __init__(self, path: Path, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror)
        self.path = path
        # os.path's checks, unlike Path's, do not raise for a path under a folder that cannot be entered
        if cause.errno == errno.EISDIR:
            why = "it is a folder"
        else:
            nearest = next((p for p in path.parents if os.path.exists(p)), None)
            if nearest is not None and not os.path.isdir(nearest):
                why = f"{nearest} is a file, not a folder"
            else:
                reason = cause.strerror or str(cause)
                detail = f" ({reason})" if reason and cause.errno != errno.ENOENT else ""
                why = f"the folder {nearest or path.parent} cannot be written{detail}"
        self.message = f"cannot write {path}: {why}"

    def __str__(self) -> str:
        return self.message


@contextmanager
def _creating(path: Path):
    """Creating ``path`` (its folder, a temporary name beside it, the rename into place): an
    OSError there is a :class:`CannotWrite` naming ``path`` rather than the temporary name."""
    try:
        yield
    except CannotWrite:
        raise
    except OSError as e:
        raise CannotWrite(path, e) from e


def _umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux 4.7+)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere: set and put back
    os.umask(mask)
    return mask


@contextmanager
def atomic_open(path: Path):
    """Yield a binary file open on a temporary name beside ``path``; on success it is fsynced and
    renamed into place, on failure removed: a crash never leaves half a file that looks whole.
    Written piece by piece, it takes a file of any size in constant memory. A file it replaces
    keeps its permissions (a private one stays private); a new one gets those any new file gets."""
    path = Path(path)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        mode = 0o666 & ~_umask()
    with _creating(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)  # mkstemp's file is private (0600), whatever it replaces
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        with _creating(path):
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path`` and rename it into place."""
    with atomic_open(path) as f:
        f.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    system or the file system cannot, and the caller falls back to two renames."""
    if sys.platform != "linux":
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a C library older than glibc 2.28
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _aside(final: Path) -> Path:
    """Where :func:`atomic_dir` sets the old ``final`` aside: a name of tunery's own, so that a
    user's ``.NAME.old`` beside the folder is never taken for one and removed or moved in."""
    return final.with_name(f".{final.name}.tunery-aside")


def recover_dir(final: Path) -> None:
    """Finish a replacement of ``final`` that a crash cut short (where the atomic exchange is not
    available): between its two renames, the old folder set aside goes back in place; after them,
    it is removed. Called by the next :func:`atomic_dir` of the same folder."""
    final = Path(final)
    old = _aside(final)
    if old.is_dir():
        if final.exists():  # the crash came after the new folder was in: the old one is left over
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, final)


@contextmanager
def atomic_dir(final: Path):
    """Yield a temporary folder beside ``final``; on success it is renamed to ``final`` (replacing
    an older one), on failure removed. Folders of artifacts (models, checkpoints) appear whole or
    not at all, and ``final`` never goes missing: an older one is swapped with the new in one
    atomic step (Linux), else set aside, replaced and removed, and a crash between those two
    renames is undone by :func:`recover_dir` (the next call does it)."""
    final = Path(final)
    with _creating(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        recover_dir(final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's folder is private (0700), as mkstemp's file
        yield tmp
        if not final.exists():
            os.replace(tmp, final)
        elif _exchange(tmp, final):
            shutil.rmtree(tmp, ignore_errors=True)  # now the older folder
        else:
            old = _aside(final)
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            try:
                os.replace(tmp, final)
            except BaseException:
                os.replace(old, final)
                raise
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
