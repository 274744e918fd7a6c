"""Named connections and the model behind an llm node.

A node's ``connection`` names a tunery connection. Connections live in
``TUNERY_HOME/connections.yaml``; a name not configured there (``open_ai_connection`` in flows
written for the cloud) means the local tunery models. A connection of type ``openai`` sends the
node's model name to any OpenAI-compatible endpoint, reading its key from an environment variable.

On the local connection, a deployment name tunery does not know (``gpt-35-turbo``) is answered
by the default model, with a warning: ``--default-model``, else ``TUNERY_FLOW_DEFAULT_MODEL``,
else the catalog's default."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from tunery.chat import ChatModel
from tunery.data.text import read_text
from tunery.errors import InvalidInput, NotFound
from tunery.flows.spec import yaml_error
from tunery.home import atomic_write_text, home

CONNECTION_TYPES = ("tunery", "openai")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$")


@dataclass(frozen=True)
class Connection:
    name: str
    type: str = "tunery"
    base_url: str | None = None
    api_key_env: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)


ModelFactory = Callable[[Connection, "str | None"], ChatModel]


def connections_file() -> Path:
    return home().root / "connections.yaml"


def list_connections() -> dict[str, Connection]:
    path = connections_file()
    if not path.exists():
        return {}
    try:
        raw = yaml.safe_load(read_text(path, param="connections")) or {}
    except yaml.YAMLError as e:
        raise InvalidInput(yaml_error(path, e), param="connections") from None
    if not isinstance(raw, dict):
        raise InvalidInput(f"{path} must map connection names to settings", param="connections")
    out = {}
    for name, spec in raw.items():
        spec = spec or {}
        if not isinstance(spec, dict) or spec.get("type", "tunery") not in CONNECTION_TYPES:
            raise InvalidInput(f"{path}: connection {name!r} needs type tunery or openai", param="connections")
        out[str(name)] = Connection(str(name), spec.get("type", "tunery"), spec.get("base_url"),
                                    spec.get("api_key_env"))
    return out


def get_connection(name: str | None) -> Connection:
    """A configured connection, or (for any other name) the local tunery models."""
    return list_connections().get(name or "", Connection(name or "tunery", "tunery"))


def add_connection(name: str, type_: str = "openai", base_url: str | None = None,
                   api_key_env: str | None = None) -> Connection:
    if not _NAME.match(name):
        raise InvalidInput(f"invalid connection name {name!r}", param="name",
                           hint="use letters, digits and _ . -")
    if type_ not in CONNECTION_TYPES:
        raise InvalidInput(f"connection type must be one of {', '.join(CONNECTION_TYPES)}", param="type")
    if type_ == "openai" and not base_url:
        raise InvalidInput("an openai connection needs --base-url, e.g. http://localhost:8000/v1", param="base_url")
    if base_url and not re.match(r"^https?://[^\s/]+", base_url):
        raise InvalidInput(f"--base-url {base_url!r} is not an http:// or https:// URL", param="base_url",
                           hint="e.g. http://localhost:8000/v1")
    if api_key_env and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", api_key_env):
        raise InvalidInput(f"{api_key_env!r} is not an environment variable name", param="api_key_env")
    conns = list_connections()
    conns[name] = Connection(name, type_, base_url, api_key_env)
    _save(conns)
    return conns[name]


def remove_connection(name: str) -> Connection:
    conns = list_connections()
    if name not in conns:
        raise NotFound(f"no connection named {name!r}", param="name", hint="see `tunery flow connection list`")
    conn = conns.pop(name)
    _save(conns)
    return conn


def _save(conns: dict[str, Connection]) -> None:
    data = {n: {k: v for k, v in c.to_dict().items() if k != "name" and v is not None} for n, c in conns.items()}
    atomic_write_text(connections_file(), yaml.safe_dump(data, sort_keys=True))


def default_model_name(explicit: str | None = None) -> str:
    from tunery.models.catalog import DEFAULT_MODEL

    return explicit or os.environ.get("TUNERY_FLOW_DEFAULT_MODEL") or DEFAULT_MODEL


def known_locally(name: str) -> bool:
    """Whether the local connection can answer ``name`` itself: a registered or catalog model, a
    deployment, or an explicit ``MODEL@http://...`` endpoint."""
    from tunery.models import CATALOG, find
    from tunery.serving import deployments

    if "@http://" in name or "@https://" in name or name in CATALOG or find(name) is not None:
        return True
    return deployments.find(name) is not None


class ModelResolver:
    """The default model factory of flow execution: connection + model name -> ChatModel, each
    built once. ``loader`` turns a local reference into a model (default: the serving resolver);
    ``known`` says whether the local side knows a name; ``on_warning`` hears each fallback once."""

    def __init__(self, default_model: str | None = None, *, loader: Callable[[str], ChatModel] | None = None,
                 known: Callable[[str], bool] | None = None,
                 on_warning: Callable[[str], None] | None = None) -> None:
        self.default_model = default_model_name(default_model)
        self._loader = loader
        self._known = known or known_locally
        self._on_warning = on_warning
        self._models: dict[tuple[str, str], ChatModel] = {}
        self._known_names: dict[str, bool] = {}
        self._lock = threading.Lock()
        self.warnings: list[str] = []

    def _warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)
            if self._on_warning:
                self._on_warning(message)

    def resolve_name(self, connection: Connection, model: str | None) -> str:
        if connection.type == "openai":
            if not model:
                raise InvalidInput(f"connection {connection.name!r} needs a model name: set deployment_name "
                                   "or model on the node, or with --connections NODE.deployment_name=NAME",
                                   param="deployment_name")
            return model
        if model:
            with self._lock:  # one registry look-up per name, not one per line
                known = self._known_names.get(model)
                if known is None:
                    known = self._known_names[model] = bool(self._known(model))
            if known:
                return model
        if model:
            self._warn(f"model {model!r} is not known to tunery; {self.default_model!r} answers instead "
                       "(map it with --connections NODE.deployment_name=MODEL or --default-model)")
        return self.default_model

    def __call__(self, connection: Connection, model: str | None) -> ChatModel:
        name = self.resolve_name(connection, model)
        key = (connection.name if connection.type == "openai" else "", name)
        with self._lock:
            cached = self._models.get(key)
            if cached is not None:
                return cached
            if connection.type == "openai":
                from tunery.serving.clients import OpenAIChatModel

                key_value = None
                if connection.api_key_env:
                    key_value = os.environ.get(connection.api_key_env)
                    if not key_value:
                        raise InvalidInput(f"connection {connection.name!r} reads its key from "
                                           f"${connection.api_key_env}, which is not set", param="connection",
                                           hint=f"export {connection.api_key_env}=...")
                built: ChatModel = OpenAIChatModel(model=name, base_url=connection.base_url or "",
                                                   api_key=key_value)
            else:
                if self._loader is None:
                    from tunery.serving.resolve import get_chat_model

                    self._loader = get_chat_model
                # the local engine batches concurrent requests itself, so lines share it freely
                built = self._loader(name)
            self._models[key] = built
            return built
