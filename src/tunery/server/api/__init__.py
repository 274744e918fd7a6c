"""The ``/v1`` routes, one module per OpenAI API area (plus deployments)."""

from tunery.server.api import chat, deployments, files, fine_tuning, models

ROUTERS = [models.router, chat.router, files.router, fine_tuning.router, deployments.router]

__all__ = ["ROUTERS"]
