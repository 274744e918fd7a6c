"""tunery: fine-tune, serve, evaluate and optimize chat language models on your own machine."""

from tunery.chat import ChatMessage, Conversation, Role

__version__ = "0.1.0"

__all__ = ["ChatMessage", "Conversation", "Role", "__version__"]
