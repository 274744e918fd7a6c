"""The HTTP edge: an OpenAI-compatible API (and, later, the web studio) over tunery's library."""

from tunery.server.app import create_app
from tunery.server.run import ServerThread, serve

__all__ = ["ServerThread", "create_app", "serve"]
