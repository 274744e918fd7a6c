"""Crash windows and half-done writes of the state layer: a folder replaced by ``atomic_dir`` never
goes missing, and a change made of several database statements is whole or absent."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tunery import db, home
from tunery.errors import Conflict
from tunery.home import atomic_dir


def make(final: Path, text: str) -> None:
    with atomic_dir(final) as tmp:
        (tmp / "weights").write_text(text)


def test_a_failed_second_rename_puts_the_old_folder_back(tmp_path, monkeypatch):
    """Without the atomic exchange (not Linux, or a file system without it) the old folder is set
    aside, then the new one renamed in: when that second rename fails, the old one goes back."""
    final = tmp_path / "model"
    make(final, "v1")
    monkeypatch.setattr(home, "_exchange", lambda a, b: False, raising=False)
    real = home.os.replace

    def replace(src, dst):
        if Path(src).name.endswith(".tmp"):
            raise OSError("disk gone")
        real(src, dst)

    monkeypatch.setattr(home.os, "replace", replace)
    with pytest.raises(OSError, match="disk gone"):
        make(final, "v2")
    assert (final / "weights").read_text() == "v1" and [p.name for p in tmp_path.iterdir()] == ["model"]


CRASH = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from tunery import home

    final, where = Path(sys.argv[1]), sys.argv[2]
    real_replace, real_rmtree = home.os.replace, home.shutil.rmtree
    if where == "between renames":
        home._exchange = lambda a, b: False
        def replace(src, dst):
            if Path(src).name.endswith(".tmp"):
                os._exit(9)  # killed after the old folder was set aside, before the new one is in
            real_replace(src, dst)
        home.os.replace = replace
    else:  # after the exchange, before the old folder is removed
        home.shutil.rmtree = lambda *a, **k: os._exit(9)
    with home.atomic_dir(final) as tmp:
        (tmp / "weights").write_text("v2")
""")


def crash(final: Path, where: str) -> None:
    proc = subprocess.run([sys.executable, "-c", CRASH, str(final), where], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 9, proc.stderr


def test_a_crash_between_the_two_renames_is_undone(tmp_path):
    final = tmp_path / "model"
    make(final, "v1")
    crash(final, "between renames")
    assert not final.exists()  # the window: only the set-aside copy is left...
    with pytest.raises(RuntimeError), atomic_dir(final):
        raise RuntimeError("the next writer fails too")
    assert (final / "weights").read_text() == "v1"  # ...and the next call puts it back


@pytest.mark.skipif(sys.platform != "linux", reason="renameat2 is Linux's")
def test_on_linux_the_folders_are_swapped_in_one_step(tmp_path):
    final = tmp_path / "model"
    make(final, "v1")
    crash(final, "after the exchange")
    assert (final / "weights").read_text() == "v2"
    assert home._exchange(final, next(p for p in tmp_path.iterdir() if p.name.endswith(".tmp")))
    assert (final / "weights").read_text() == "v1"  # swapped back: both exist at every moment


def test_a_transaction_is_whole_or_absent(tunery_home):
    from tunery.models import ModelRecord, registry

    a = ModelRecord(id="ft-a", kind="base", path=tunery_home / "a", source="test")
    with pytest.raises(RuntimeError), db.transaction() as tx:
        assert registry.register(a, conn=tx).id == "ft-a"  # read back through the transaction
        raise RuntimeError("the job that made it failed")
    assert registry.find("ft-a") is None
    registry.register(a)
    b = ModelRecord(id="ft-b", kind="base", path=tunery_home / "b", source="test")
    with pytest.raises(Conflict), db.transaction() as tx:
        registry.register(b, conn=tx)
        registry.register(a, conn=tx)  # fails in the middle: b must not stay behind
    assert registry.find("ft-b") is None and registry.find("ft-a") is not None


def test_a_base_with_fine_tunes_is_not_removed(tunery_home):
    from tunery.models import ModelRecord, registry

    registry.register(ModelRecord(id="base", kind="base", path=tunery_home / "base", source="test"))
    registry.register(ModelRecord(id="ft", kind="fine-tuned", parent="base", path=tunery_home / "ft",
                                  source="test", method="lora"))
    with pytest.raises(Conflict, match="base of 1 fine-tuned"):
        registry.remove("base", delete_files=False)
    registry.remove("ft", delete_files=False)
    assert registry.remove("base", delete_files=False).id == "base" and registry.list_models() == []


@pytest.mark.parametrize("window", [False, True])
def test_a_users_dot_old_folder_beside_is_never_touched(tmp_path, monkeypatch, window):
    """Replacing ``model`` (with or without the atomic exchange, and recovering from a crash
    between the two renames) leaves alone a ``.model.old`` of the user's: it was taken for the
    folder set aside, removed before a replacement and moved in place of a missing ``model``."""
    final = tmp_path / "model"
    mine = tmp_path / ".model.old"
    mine.mkdir()
    (mine / "notes").write_text("the user's")
    if window:  # no model, as after a crash between renames: the user's folder is no copy of it
        make(final, "v1")
        crash(final, "between renames")
    else:
        make(final, "v1")
        monkeypatch.setattr(home, "_exchange", lambda a, b: False, raising=False)
    make(final, "v2")
    assert (final / "weights").read_text() == "v2"
    assert (mine / "notes").read_text() == "the user's"
