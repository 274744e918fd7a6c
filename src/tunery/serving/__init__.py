"""Inference: the chat-backend contract, engines behind it, and remote clients."""

from tunery.serving.base import ChatModel, Completion, CompletionChunk, GenerationParams, Usage
from tunery.serving.clients import OpenAIChatModel, ScriptedChatModel, endpoint_from_spec

__all__ = ["ChatModel", "Completion", "CompletionChunk", "GenerationParams", "OpenAIChatModel",
           "ScriptedChatModel", "Usage", "endpoint_from_spec"]
