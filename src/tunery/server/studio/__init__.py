"""The web studio served by ``tunery serve`` at ``/``: server-rendered page shells whose scripts
talk to the same ``/v1`` HTTP API the openai SDK uses, plus a few read-only ``/v1/tunery/...``
extensions (file reports, job metrics, example questions, flow runs) that the OpenAI API lacks."""

from fastapi import APIRouter

from tunery.server.studio import api, pages
from tunery.server.studio.pages import install_not_found

router = APIRouter()
router.include_router(pages.router)
router.include_router(api.router)

__all__ = ["install_not_found", "router"]
