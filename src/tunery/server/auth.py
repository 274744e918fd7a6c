"""Who may call the server.

* **API keys**, optional: when any key is configured (``--api-key``, repeatable, or
  ``TUNERY_API_KEY`` holding one or more comma-separated keys), every ``/v1`` route wants
  ``Authorization: Bearer KEY`` (or Azure's ``api-key: KEY`` header) and answers 401 otherwise.
  Serving on a non-loopback address needs a key unless the user says ``--insecure-no-key``.
* **Hosts and origins**, always (:class:`BrowserGuard`, on every route): a web page the user
  visits must not reach the server, neither directly (cross-site requests, refused by their
  ``Origin``) nor through a DNS-rebinding name that points at it (refused by their ``Host``),
  as in Ollama's CVE-2024-28224. Clients that are not browsers (the openai SDK, curl) send no
  ``Origin`` and a loopback ``Host``, so they pass.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from tunery.errors import InvalidInput
from tunery.server.errors import Forbidden, Unauthorized

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
"""Names every server answers to, on its own port."""
_WILDCARDS = ("0.0.0.0", "::", "")
_CORS_METHODS = "GET, POST, PUT, DELETE, OPTIONS"
_CORS_EXPOSED = "Retry-After, retry-after-ms"  # what a page may read of an answer beyond the simple headers


def _env_list(name: str) -> list[str]:
    return [v.strip() for v in os.environ.get(name, "").split(",")]


def configured_keys(extra: Iterable[str] = ()) -> list[str]:
    """Keys from the command line plus those in ``TUNERY_API_KEY``; blanks dropped, order kept."""
    keys = [k.strip() for k in extra] + _env_list("TUNERY_API_KEY")
    return list(dict.fromkeys(k for k in keys if k))


def is_loopback(host: str) -> bool:
    """Whether an address to listen on is reachable from this machine only (a name other than
    ``localhost`` counts as reachable from elsewhere: it may resolve to anything)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, keys: list[str], *, insecure_no_key: bool = False) -> None:
    """Refuse to serve on an address other machines can reach with no API key: anyone on the
    network could then upload files, start jobs and read every answer."""
    if keys or insecure_no_key or is_loopback(host):
        return
    raise InvalidInput(f"refusing to listen on {host or 'every interface'} without an API key: anyone who can "
                       "reach it could use it", param="host",
                       hint="give a key with --api-key KEY or TUNERY_API_KEY, or accept the risk with --insecure-no-key")


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


# -- hosts and origins ----------------------------------------------------------------------------

def _split_host(value: str) -> tuple[str, int | None]:
    """``"Example.com:8000"`` -> ``("example.com", 8000)``; ``"[::1]"`` -> ``("[::1]", None)``."""
    value = value.strip().lower()
    name, sep, port = value.rpartition(":")
    if not sep or "]" in port or not name:  # no port, or the colon was inside an IPv6 literal
        name, port = value, ""
    if port and not port.isdigit():
        return value, -1  # matches no port
    return name.rstrip("."), int(port) if port else None


def _normal_origin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


_HOST_ENTRY = re.compile(r"(\[[0-9a-f:.]+\]|[a-z0-9._-]+)(:[0-9]{1,5})?")


def _host_entry(entry: str) -> str:
    """An ``--allowed-host`` entry as the ``Host`` header writes it (a bare IPv6 address gets its
    brackets); anything else that could never match a ``Host`` header is refused, not ignored."""
    if entry == "*":
        return entry
    if entry.count(":") > 1 and not entry.startswith("["):
        entry = f"[{entry}]"
    if not _HOST_ENTRY.fullmatch(entry):
        raise InvalidInput(f"allowed host {entry!r} is not a host name, an address or NAME:PORT",
                           param="allowed_host", hint="write it as a browser's Host header does, e.g. "
                           "myhost.lan, myhost.lan:8000, 192.168.1.5 or [fe80::1]:8000 (no scheme, no path)")
    return entry


@dataclass(frozen=True)
class Access:
    """Which ``Host`` and ``Origin`` values the server accepts (see :class:`BrowserGuard`).

    ``bind`` is the address and port the server listens on; None when unknown (an app made for a
    test client), and then the loopback names match on any port. ``allowed_hosts`` adds names
    (``NAME`` on any port, ``NAME:PORT`` on that port, ``*`` any host at all, which also gives up the
    protection against DNS rebinding: use it only with API keys), ``cors_origins``
    web origins such as ``http://localhost:3000`` (``*`` any origin) that may call the API from a
    browser; both add to ``TUNERY_ALLOWED_HOSTS`` and ``TUNERY_CORS_ORIGINS`` (comma-separated)."""

    bind: tuple[str, int] | None = None
    allowed_hosts: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()

    @classmethod
    def configure(cls, bind: tuple[str, int] | None = None, allowed_hosts: Iterable[str] = (),
                  cors_origins: Iterable[str] = ()) -> Access:
        hosts = [_host_entry(h.strip().lower()) for h in [*allowed_hosts, *_env_list("TUNERY_ALLOWED_HOSTS")]
                 if h.strip()]
        origins = [_normal_origin(o) for o in [*cors_origins, *_env_list("TUNERY_CORS_ORIGINS")]]
        for origin in origins:
            if origin and origin != "*" and not origin.startswith(("http://", "https://")):
                raise InvalidInput(f"CORS origin {origin!r} is not a web origin", param="cors_origin",
                                   hint="write it as the browser sends it, e.g. http://localhost:3000")
        return cls(bind, tuple(dict.fromkeys(h for h in hosts if h)), tuple(dict.fromkeys(o for o in origins if o)))

    def host_allowed(self, value: str, default_port: int) -> bool:
        if "*" in self.allowed_hosts:
            return True
        name, port = _split_host(value)
        port = default_port if port is None else port
        for entry in self.allowed_hosts:
            e_name, e_port = _split_host(entry)
            if name == e_name and (e_port is None or e_port == port):
                return True
        if self.bind is None:
            return name in LOOPBACK_NAMES
        if port != self.bind[1]:
            return False
        bound = self.bind[0].strip("[]").lower()
        if name in LOOPBACK_NAMES or name.strip("[]") == bound:
            return True
        if bound in _WILDCARDS:  # every interface: any address written as an IP (no name, so nothing to rebind)
            try:
                ipaddress.ip_address(name.strip("[]"))
                return True
            except ValueError:
                return False
        return False

    def origin_allowed(self, origin: str) -> bool:
        return "*" in self.cors_origins or _normal_origin(origin) in self.cors_origins

    def describe_hosts(self) -> str:
        """The names :meth:`host_allowed` accepts, for a refusal's message."""
        names = list(LOOPBACK_NAMES)
        if self.bind is not None:
            bound = self.bind[0].strip("[]").lower()
            if bound in _WILDCARDS:
                names.append("any IP address")
            elif bound not in ("localhost", "127.0.0.1", "::1"):
                names.append(self.bind[0])
        text = ", ".join(names) + (f" on port {self.bind[1]}" if self.bind else "")
        return text + "".join(f", {h}" for h in self.allowed_hosts)


def _refusal(message: str, code: str, hint: str) -> JSONResponse:
    exc = Forbidden(message, code=code, hint=hint)
    return JSONResponse(exc.to_openai(), status_code=exc.status_code, headers={"Vary": "Origin"})


class BrowserGuard:
    """Pure ASGI middleware (``BaseHTTPMiddleware`` would buffer streams) in front of every route.

    1. ``Host`` must be one the server answers to (:meth:`Access.host_allowed`): a page on a
       DNS-rebinding name pointed at 127.0.0.1 sends its own name, so it is refused even for the
       same-origin reads that no ``Origin`` check would see.
    2. ``Origin``, when present, must be the server's own (that of its ``Host``: the studio) or an
       allowed one; browsers send it on every cross-site request, including the "simple" form
       posts that need no preflight. Allowed origins get CORS answers, preflights included.

    Both refusals are 403 with an OpenAI error object (codes ``host_not_allowed`` and
    ``origin_not_allowed``): the request is well formed, the server declines to serve it."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        secure = scope.get("scheme") in ("https", "wss")
        refusal = None
        if not self.access.host_allowed(host, 443 if secure else 80):
            refusal = _refusal(f"Host {host!r} is not allowed: this server answers to {self.access.describe_hosts()} "
                               "(a web page on another name pointed at this machine must not reach it)",
                               "host_not_allowed", f"if you reach it by that name, start it with --allowed-host "
                                                   f"{_split_host(host)[0] or 'NAME'}")
        origin = headers.get("origin")
        own = f"{'https' if secure else 'http'}://{host.strip().lower()}"  # scheme, name and port must all match
        cross_site = origin is not None and _normal_origin(origin) != own
        if refusal is None and cross_site and not self.access.origin_allowed(origin):
            refusal = _refusal(f"Origin {origin!r} is not allowed: web pages of other sites may not call this server",
                               "origin_not_allowed", f"to let that site's pages call it, start the server with "
                                                     f"--cors-origin {origin}")
        if refusal is not None:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            else:
                await refusal(scope, receive, send)
            return
        if not cross_site or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cors = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            # a preflight: answered here, for every route, before any key is asked for (browsers send none)
            requested = headers.get("access-control-request-headers", "")
            await send({"type": "http.response.start", "status": 204, "headers": cors + [
                (b"access-control-allow-methods", _CORS_METHODS.encode()),
                (b"access-control-allow-headers", requested.encode("latin-1")),
                (b"access-control-max-age", b"600"), (b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *cors,
                                                  (b"access-control-expose-headers", _CORS_EXPOSED.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_cors)
