"""Turn a model reference into a ChatModel: ``NAME@http(s)://host/v1`` is a remote
OpenAI-compatible endpoint; anything else is a local tunery model or deployment."""

from __future__ import annotations

from tunery.chat import ChatModel
from tunery.serving.clients import endpoint_from_spec


def get_chat_model(ref: str, *, precision: str | None = None) -> ChatModel:
    """``precision`` applies to local models (see ``tunery.serving.manager``); a remote endpoint
    serves at its own."""
    remote = endpoint_from_spec(ref)
    if remote is not None:
        return remote
    from tunery.serving.local import LocalChatModel  # the in-process engine (imports torch)

    return LocalChatModel(ref, precision=precision)
