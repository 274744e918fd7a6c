"""Base models: the offline catalog, pulling and converting weights, the registry, loading."""

from tunery.models.catalog import CATALOG, DEFAULT_MODEL, ModelSpec, TrainingDefaults, get_spec
from tunery.models.pull import ensure
from tunery.models.registry import ModelRecord, find, get, list_models, register, remove

__all__ = [
    "CATALOG", "DEFAULT_MODEL", "ModelRecord", "ModelSpec", "TrainingDefaults", "ensure", "find", "get",
    "get_spec", "list_models", "register", "remove",
]
