"""Optional API keys. When any key is configured (``--api-key``, repeatable, or ``TUNERY_API_KEY``
holding one or more comma-separated keys), every ``/v1`` route wants ``Authorization: Bearer KEY``
(or Azure's ``api-key: KEY`` header) and answers 401 otherwise."""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable

from fastapi import Request

from tunery.server.errors import Unauthorized


def configured_keys(extra: Iterable[str] = ()) -> list[str]:
    """Keys from the command line plus those in ``TUNERY_API_KEY``; blanks dropped, order kept."""
    keys = [k.strip() for k in extra]
    keys += [k.strip() for k in os.environ.get("TUNERY_API_KEY", "").split(",")]
    return list(dict.fromkeys(k for k in keys if k))


def _presented(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return request.headers.get("api-key")


async def require_key(request: Request) -> None:
    keys: list[str] = getattr(request.app.state, "api_keys", [])
    if not keys:
        return
    given = _presented(request)
    if given is None:
        raise Unauthorized("You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.",
                           hint="the server was started with API keys (--api-key or TUNERY_API_KEY)")
    # compare against every key so the time taken does not tell which prefix matched
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(given.encode(), key.encode())
    if not ok:
        raise Unauthorized("Incorrect API key provided.",
                           hint="use one of the keys the server was started with")
