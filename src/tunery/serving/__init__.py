"""Inference: the chat-backend contract, engines behind it, and remote clients."""

from tunery.chat import ChatModel, Completion, CompletionChunk, GenerationParams, Usage
from tunery.serving.clients import OpenAIChatModel, ScriptedChatModel, endpoint_from_spec
from tunery.serving.local import LocalChatModel
from tunery.serving.manager import register_engine

__all__ = ["ChatModel", "Completion", "CompletionChunk", "GenerationParams", "LocalChatModel", "OpenAIChatModel",
           "ScriptedChatModel", "Usage", "endpoint_from_spec", "register_engine"]
