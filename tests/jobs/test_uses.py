"""What a job or a deployment still needs is kept: the schema's ``model_uses`` and ``file_uses``
views agree with :data:`tunery.jobs.store.TERMINAL`, a model used only through a checkpoint is
kept, and a delete racing with the creation of a job or a deployment never leaves it without its
model or file, on both state databases (``backend``, tests/jobs/conftest.py): the creating
transaction is held open at a chosen point while the delete runs in another thread."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from tunery import db
from tunery.data import files
from tunery.errors import Conflict, InvalidInput, NotFound
from tunery.jobs import api, create_job, store
from tunery.models import ModelRecord, find, registry, remove
from tunery.serving import deployments


def _insert_job(status: str, model: str, training_file: str, validation_file: str | None = None) -> str:
    job_id = store.new_id("ftjob")
    db.execute("INSERT INTO jobs (id, status, model, training_file, validation_file, seed, created_at) "
               "VALUES (?,?,?,?,?,?,?)", (job_id, status, model, training_file, validation_file, 0, db.now()))
    return job_id


def test_the_uses_views_list_exactly_the_jobs_that_have_not_ended():
    statuses = store.ACTIVE + store.TERMINAL
    jobs = {s: _insert_job(s, f"model-{s}", f"train-{s}", f"valid-{s}") for s in statuses}
    open_ = {s for s in statuses if s not in store.TERMINAL}
    assert open_ == set(store.ACTIVE)  # every status is one or the other
    model_uses = db.query("SELECT model, user_name, status FROM model_uses WHERE user_kind='fine-tuning job'")
    assert {(r["model"], r["user_name"], r["status"]) for r in model_uses} == {
        (f"model-{s}", jobs[s], s) for s in open_}
    file_uses = db.query("SELECT file_id, role, job_id, status FROM file_uses")
    assert {tuple(r) for r in file_uses} == {
        (f"{kind}-{s}", f"{kind}ing_file" if kind == "train" else "validation_file", jobs[s], s)
        for s in open_ for kind in ("train", "valid")}


def _checkpoint(job_id: str, model: str, step: int, folder, status: str) -> str:
    """A checkpoint of job ``job_id`` (on ``model``) at ``step``, then the job ended as ``status``."""
    name = f"{store.model_name(model, None, job_id)}:ckpt-step-{step}"
    folder.mkdir()
    store.add_checkpoint(job_id, step, str(folder), name, {"step": step})
    store.update(job_id, status=status)
    return name


def test_a_model_used_only_through_a_checkpoint_is_kept(tiny_model, chat_file, tmp_path):
    train = files.create_from_path(chat_file(12))
    job = create_job(model="tiny-random", training_file=train.id)
    ckpt = _checkpoint(job["id"], "tiny-random", 2, tmp_path / "one", "succeeded")
    deployments.create("from-ckpt", ckpt)
    with pytest.raises(Conflict) as e:
        remove("tiny-random", delete_files=False)
    assert e.value.param == "model" and "from-ckpt" in str(e.value) and ckpt in str(e.value)
    deployments.delete("from-ckpt")

    # a job that starts from the checkpoint, and a deployment of a checkpoint of that job
    second = create_job(model=ckpt, training_file=train.id)
    with pytest.raises(Conflict) as e:
        remove("tiny-random", delete_files=False)
    assert second["id"] in str(e.value) and ckpt in str(e.value)
    ckpt2 = _checkpoint(second["id"], ckpt, 1, tmp_path / "two", "cancelled")
    deployments.create("from-ckpt2", ckpt2)
    with pytest.raises(Conflict) as e:
        remove("tiny-random", delete_files=False)
    assert "from-ckpt2" in str(e.value) and ckpt2 in str(e.value)
    deployments.delete("from-ckpt2")
    remove("tiny-random", delete_files=False)
    assert find("tiny-random") is None


class _Hold:
    """One stop inside the transaction of the code under test: the first time :meth:`here` is
    reached it waits there until :meth:`release`; :meth:`wait` returns once it was reached."""

    def __init__(self) -> None:
        self.reached, self.go, self.used = threading.Event(), threading.Event(), False

    def here(self) -> None:
        self.used = True
        self.reached.set()
        assert self.go.wait(30), "never released"

    def wait(self) -> None:
        assert self.reached.wait(30), "the hold was never reached"

    def release(self) -> None:
        self.go.set()


def _hold_call(monkeypatch, owner, name: str, when) -> _Hold:
    """A hold at the first call of ``owner.name`` for which ``when(*args, **kwargs)``, before it runs."""
    hold, real = _Hold(), getattr(owner, name)

    def held(*args, **kwargs):
        if not hold.used and when(*args, **kwargs):
            hold.here()
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, held)
    return hold


def _hold_after_sql(monkeypatch, marker: str) -> _Hold:
    """A hold right after the first statement containing ``marker`` run in a :func:`tunery.db.transaction`."""
    hold, real = _Hold(), db.transaction

    class Conn:
        def __init__(self, conn):
            self._conn = conn

        def execute(self, sql, *args):
            out = self._conn.execute(sql, *args)
            if marker in sql and not hold.used:
                hold.here()
            return out

    @contextlib.contextmanager
    def transaction():
        with real() as conn:
            yield Conn(conn)

    monkeypatch.setattr(db, "transaction", transaction)
    return hold


def _in_thread(fn) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def run():
        try:
            result["value"] = fn()
        except Exception as e:  # noqa: BLE001 - the test looks at what was raised
            result["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def _blocked(thread: threading.Thread, backend: str) -> bool:
    """Whether ``thread``, a delete, waits for the held transaction: on PostgreSQL until another
    session waits on a lock (the row lock), on SQLite (a busy wait, nothing to see) for a while."""
    if backend == "postgresql":
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and thread.is_alive():
            if db.query("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type='Lock' "
                        "AND datname=current_database()")[0][0]:
                return True
            time.sleep(0.05)
        return False
    thread.join(1.0)
    return thread.is_alive()


def _local_model(tiny_model) -> str:
    """A registered model that is not in the catalog (a catalog one may be used before it is pulled)."""
    return registry.register(ModelRecord(id="my-tiny", kind="base", path=tiny_model.path, source="test",
                                         meta=tiny_model.meta)).id


def _second_waits(held: _Hold, first, second, backend: str, why: str) -> dict:
    """With ``first`` (a thread) held inside its transaction by ``held``, run ``second`` in a thread:
    it must wait for that transaction (``why`` if not); then let both end. Returns ``second``'s outcome."""
    held.wait()
    thread, out = _in_thread(second)
    try:
        assert _blocked(thread, backend), f"{why}: {out}"
    finally:
        held.release()
        first.join(30)
        thread.join(30)
    return out


@pytest.mark.parametrize("what", ["model", "training_file", "validation_file"])
def test_a_delete_while_a_job_is_created_waits_and_then_refuses(backend, tiny_model, chat_file, monkeypatch, what):
    model = _local_model(tiny_model)
    train = files.create_from_path(chat_file(12))
    valid = files.create_from_path(chat_file(4, name="valid.jsonl"))
    # the job's row is written, its transaction not committed
    held = _hold_call(monkeypatch, api.store, "add_event", lambda *a, **kw: kw.get("conn") is not None)
    creating, created = _in_thread(lambda: create_job(model=model, training_file=train.id, validation_file=valid.id))
    delete = {"model": lambda: remove(model, delete_files=False),
              "training_file": lambda: files.delete(train.id), "validation_file": lambda: files.delete(valid.id)}[what]
    deleted = _second_waits(held, creating, delete, backend, "the delete did not wait for the job's transaction")
    job = created["value"]
    assert isinstance(deleted.get("error"), Conflict), deleted
    assert job["id"] in str(deleted["error"])
    assert find(model) is not None and files.get(train.id) and files.get(valid.id)


@pytest.mark.parametrize("what", ["model", "training_file"])
def test_a_job_created_while_its_model_or_file_is_deleted_is_refused(backend, tiny_model, chat_file, monkeypatch,
                                                                     what):
    model = _local_model(tiny_model)
    train = files.create_from_path(chat_file(12))
    # the delete has checked the uses (there are none) and not yet deleted the row
    held = _hold_after_sql(monkeypatch, "model_uses" if what == "model" else "file_uses")
    deleting, deleted = _in_thread(lambda: remove(model, delete_files=False) if what == "model"
                                   else files.delete(train.id))
    created = _second_waits(held, deleting, lambda: create_job(model=model, training_file=train.id), backend,
                            "the job was created past the delete's lock")
    assert "error" not in deleted, deleted
    assert isinstance(created.get("error"), InvalidInput), created
    assert created["error"].param == what
    assert db.query("SELECT id FROM jobs") == []


def test_a_model_removed_while_it_is_deployed_is_refused(backend, tiny_model, monkeypatch):
    # the deployment's model is checked, the deployment not yet inserted
    held = _hold_call(monkeypatch, registry, "find", lambda name, **kw: name == "dep")
    creating, created = _in_thread(lambda: deployments.create("dep", "tiny-random"))
    deleted = _second_waits(held, creating, lambda: remove("tiny-random", delete_files=False), backend,
                            "the removal did not wait for the deployment")
    assert created["value"].model == "tiny-random"
    assert isinstance(deleted.get("error"), Conflict) and "dep" in str(deleted["error"])
    assert find("tiny-random") is not None


def _child(model: str, tmp_path) -> ModelRecord:
    return ModelRecord(id=f"ft:{model}::child", kind="fine-tuned", parent=model, method="lora",
                       path=tmp_path, source="test")


def test_a_model_registered_on_a_base_being_removed_is_refused(backend, tiny_model, monkeypatch, tmp_path):
    model = _local_model(tiny_model)
    # the removal has checked the uses and children (none) and not yet deleted the row
    held = _hold_after_sql(monkeypatch, "FROM models WHERE parent=")
    removing, removed = _in_thread(lambda: remove(model, delete_files=False))
    created = _second_waits(held, removing, lambda: registry.register(_child(model, tmp_path)), backend,
                            "the fine-tune was registered past the removal's lock")
    assert "error" not in removed, removed
    assert isinstance(created.get("error"), NotFound) and model in str(created["error"]), created
    assert db.query("SELECT id FROM models WHERE parent=?", (model,)) == []


def test_a_base_removed_while_a_model_is_registered_on_it_is_refused(backend, tiny_model, monkeypatch, tmp_path):
    model = _local_model(tiny_model)
    # the fine-tune's row is written, its transaction not committed
    held = _hold_after_sql(monkeypatch, "INTO models (")
    registering, registered = _in_thread(lambda: registry.register(_child(model, tmp_path)))
    removed = _second_waits(held, registering, lambda: remove(model, delete_files=False), backend,
                            "the removal did not wait for the fine-tune's registration")
    assert registered["value"].parent == model
    assert isinstance(removed.get("error"), Conflict) and "child" in str(removed["error"]), removed
    assert find(model) is not None


def test_a_deleted_file_still_marks_where_the_next_page_starts(backend, tmp_path):
    """`after` naming a file deleted since the previous page (the SDK's cleanup loop), on both
    databases: the page goes on after where it stood, in either order."""
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"f{i}.jsonl")
        paths[-1].write_text("{}\n")
    ids = [files.create_from_path(p).id for p in paths]
    files.delete(ids[1])
    assert [f.id for f in files.list_files(order="asc", after=ids[1])] == ids[2:]
    assert [f.id for f in files.list_files(order="desc", after=ids[1])] == ids[:1]
    assert [f.id for f in files.list_files(order="asc", after=ids[1], limit=1)] == ids[2:3]
