"""Deployments, as in Azure AI Foundry: a name under which a base model, a fine-tune or a
checkpoint is served, with a tokens-per-minute limit and a content-filter level.

A deployment name is usable wherever a model name is (``model`` in chat completions, ``tunery
chat``, flows). It cannot shadow a registered or catalog model's name, nor take one of the
fine-tuned models' (``ft:...``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tunery import db
from tunery.errors import Conflict, InvalidInput, NotFound
from tunery.models import registry
from tunery.models.catalog import CATALOG
from tunery.models.registry import NAME_RE
from tunery.serving.content_filter import LEVELS, ContentFilter

MAX_LIMIT = 2**63 - 1
"""The largest tokens- or requests-per-minute limit: the largest integer the database stores."""


@dataclass(frozen=True)
class Deployment:
    name: str
    model: str
    tpm: int | None = None
    content_filter: str = "default"
    created_at: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def blocklist(self) -> list[str]:
        return list(self.meta.get("blocklist") or [])

    @property
    def rpm(self) -> int | None:
        """Its requests-per-minute limit; None: none."""
        return self.meta.get("rpm")

    @property
    def precision(self) -> str | None:
        """The precision it is served at; None: the server's (``--precision``, else int8)."""
        return self.meta.get("precision")

    def filter(self) -> ContentFilter:
        return ContentFilter(self.content_filter, self.blocklist)

    def to_openai(self) -> dict[str, Any]:
        return {"id": self.name, "object": "deployment", "name": self.name, "model": self.model,
                "tpm": self.tpm, "rpm": self.rpm, "content_filter": self.content_filter, "blocklist": self.blocklist,
                "precision": self.precision, "created_at": self.created_at, "status": "succeeded"}

    def to_model(self) -> dict[str, Any]:
        """The entry for ``GET /v1/models``."""
        return {"id": self.name, "object": "model", "created": self.created_at, "owned_by": "deployment",
                "parent": self.model, "root": self.model, "kind": "deployment"}


def _record(row) -> Deployment:
    return Deployment(name=row["name"], model=row["model"], tpm=row["tpm"], content_filter=row["content_filter"],
                      created_at=row["created_at"], meta=db.loads(row["meta"], {}))


UNCHANGED: Any = object()
"""An :func:`update` argument left out: the deployment keeps what it has."""


def _settings(rec: registry.ModelRecord, tpm: int | None, content_filter: str, blocklist: list[str] | None,
              precision: str | None, rpm: int | None = None) -> tuple[int | None, str, dict[str, Any]]:
    """A deployment's settings, checked: (tpm, content filter, meta holding the blocklist, the
    precision and the requests-per-minute limit) for one of model ``rec``."""
    for value, param, unit in ((tpm, "tpm", "tokens"), (rpm, "rpm", "requests")):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT):
            raise InvalidInput(f"{param} must be a whole number of {unit} per minute from 1 to {MAX_LIMIT}, not "
                               f"{value!r}", param=param, hint="leave it out for no limit")
    if content_filter not in LEVELS:
        raise InvalidInput(f"content_filter must be one of {', '.join(LEVELS)}, not {content_filter!r}",
                           param="content_filter")
    terms = [t for t in (blocklist or []) if isinstance(t, str) and t.strip()]
    if len(terms) != len(blocklist or []):
        raise InvalidInput("blocklist must be a list of non-empty strings", param="blocklist")
    if precision is not None and precision.strip().lower() not in ("", "auto"):
        from tunery.compiled.cache import check_precision

        precision = check_precision(precision)
        if rec.meta.get("engine"):  # a registered export runs as it was exported (serving.manager.route)
            exported = {"none": "float32"}.get(rec.meta.get("export"), rec.meta.get("export") or "its own")
            raise InvalidInput(f"{rec.id} is an export, served at the precision it was exported with ({exported}): "
                               "precision does not apply", param="precision",
                               hint="leave precision out, or export again with another --quantize")
    else:
        precision = None  # the server's default, whatever it is when the deployment is used
    meta: dict[str, Any] = {"blocklist": terms} if terms else {}
    if precision is not None:
        meta["precision"] = precision
    if rpm is not None:
        meta["rpm"] = rpm
    return tpm, content_filter, meta


def create(name: str, model: str, *, tpm: int | None = None, content_filter: str = "default",
           blocklist: list[str] | None = None, precision: str | None = None, rpm: int | None = None) -> Deployment:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidInput(f"invalid deployment name {name!r}: use letters, digits and . _ - : (up to 128)",
                           param="name")
    if name.startswith(registry.FINE_TUNED_PREFIX):
        raise InvalidInput(f"invalid deployment name {name!r}: names starting with "
                           f"{registry.FINE_TUNED_PREFIX!r} are kept for fine-tuned models and their checkpoints",
                           param="name", hint="pick a name without that prefix")
    rec = registry.get(model)  # NotFound names the model, before the other fields are checked
    tpm, content_filter, meta = _settings(rec, tpm, content_filter, blocklist, precision, rpm)
    try:
        # checked again and inserted in one transaction, the model's row locked until it commits
        # (registry.find(lock=True)): a removal that comes now waits and then sees the deployment,
        # one that came first left no model, which is NotFound as above
        with db.transaction() as tx:
            registry.get(model, conn=tx, lock=True)
            # a catalog model not pulled yet counts: once pulled, a deployment of its name would hide it
            if (taken := registry.find(name, conn=tx)) is not None or name in CATALOG:
                which = "a model" if taken is not None else "a catalog model (not pulled yet)"
                raise Conflict(f"{name!r} is already the name of {which}", param="name",
                               hint="pick a deployment name that is not a model name")
            tx.execute("INSERT INTO deployments (name, model, tpm, content_filter, created_at, meta) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       (name, model, tpm, content_filter, db.now(), db.dumps(meta)))
    except db.sqlite3.IntegrityError as e:  # the insert: rolled back as the transaction left
        raise Conflict(f"a deployment named {name!r} already exists", param="name",
                       hint=f"delete it first (`tunery deployments delete {name}`) or pick another name") from e
    return get(name)


def find(name: str) -> Deployment | None:
    rows = db.query("SELECT * FROM deployments WHERE name=?", (name,))
    return _record(rows[0]) if rows else None


def get(name: str) -> Deployment:
    dep = find(name)
    if dep is None:
        raise _unknown(name)
    return dep


def _unknown(name: str) -> NotFound:
    return NotFound(f"no deployment named {name!r}", param="name", hint="see `tunery deployments list`")


def list_deployments() -> list[Deployment]:
    return [_record(r) for r in db.query("SELECT * FROM deployments ORDER BY created_at, name")]


def update(name: str, *, tpm: int | None = UNCHANGED, content_filter: str = UNCHANGED,
           blocklist: list[str] | None = UNCHANGED, precision: str | None = UNCHANGED,
           rpm: int | None = UNCHANGED) -> Deployment:
    """Change a deployment's limits, content filter, blocklist or precision (Azure's deployment
    update); what is left out stays, ``tpm=None`` (``rpm=None``) lifts that limit. The model stays: deploy it under
    another name to serve another. A running server applies it from the next request, which reads
    the deployment; tokens already counted in the last minute still count against a new limit."""
    changes = {k: v for k, v in {"tpm": tpm, "content_filter": content_filter, "blocklist": blocklist,
                                 "precision": precision, "rpm": rpm}.items() if v is not UNCHANGED}
    with db.transaction() as tx:  # read, checked and written as one: two updates at once lose neither
        rows = db.query("SELECT * FROM deployments WHERE name=?" + db.row_lock(), (name,), conn=tx)
        if not rows:
            raise _unknown(name)
        dep = _record(rows[0])
        rec = registry.get(dep.model)
        wanted = {"tpm": dep.tpm, "content_filter": dep.content_filter, "blocklist": dep.blocklist,
                  "precision": dep.precision, "rpm": dep.rpm, **changes}
        tpm, content_filter, meta = _settings(rec, **wanted)
        tx.execute("UPDATE deployments SET tpm=?, content_filter=?, meta=? WHERE name=?",
                   (tpm, content_filter, db.dumps(meta), name))
    return get(name)


def delete(name: str) -> Deployment:
    dep = get(name)
    db.execute("DELETE FROM deployments WHERE name=?", (name,))
    from tunery.serving.ratelimit import limiter

    limiter.reset(name)
    return dep
