"""Running the app under uvicorn: in the foreground (``tunery serve``) or on a background thread
(tests, benchmarks, the quickstart), on a free loopback port when none is given."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

from tunery.errors import InvalidInput


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _config(host: str, port: int, *, api_keys: Iterable[str], worker: bool, log_level: str,
            allowed_hosts: Iterable[str], cors_origins: Iterable[str], insecure_no_key: bool) -> Any:
    import uvicorn

    from tunery.server.app import create_app
    from tunery.server.auth import check_exposure

    app = create_app(api_keys=api_keys, worker=worker, bind=(host, port), allowed_hosts=allowed_hosts,
                     cors_origins=cors_origins)
    check_exposure(host, app.state.api_keys, insecure_no_key=insecure_no_key)
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=log_level == "debug",
                          timeout_graceful_shutdown=5)


def serve(host: str = "127.0.0.1", port: int = 8000, *, api_keys: Iterable[str] = (), worker: bool = True,
          log_level: str = "info", allowed_hosts: Iterable[str] = (), cors_origins: Iterable[str] = (),
          insecure_no_key: bool = False) -> None:
    """Serve until interrupted. A non-loopback ``host`` needs an API key unless ``insecure_no_key``;
    ``allowed_hosts`` and ``cors_origins`` are as in :func:`tunery.server.app.create_app`."""
    import uvicorn

    config = _config(host, port, api_keys=api_keys, worker=worker, log_level=log_level,
                     allowed_hosts=allowed_hosts, cors_origins=cors_origins, insecure_no_key=insecure_no_key)
    check_can_listen(host, port)
    uvicorn.Server(config).run()


def check_can_listen(host: str, port: int) -> None:
    """Refuse, naming the fix, an address the server could not listen on (the port is taken, or
    the host is not this machine's): before the server starts, or before minutes of work that end
    in serving (the quickstart)."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as e:
        raise InvalidInput(f"cannot listen on {host}:{port}: {e.strerror}", param="port",
                           hint="pick another port with --port") from e


class ServerThread:
    """The server on a background thread: ``with ServerThread() as s: ... s.base_url``."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, *, api_keys: Iterable[str] = (),
                 worker: bool = False, log_level: str = "warning", allowed_hosts: Iterable[str] = (),
                 cors_origins: Iterable[str] = (), insecure_no_key: bool = False) -> None:
        import uvicorn

        self.host, self.port = host, port or free_port(host)
        self._server = uvicorn.Server(_config(self.host, self.port, api_keys=api_keys, worker=worker,
                                              log_level=log_level, allowed_hosts=allowed_hosts,
                                              cors_origins=cors_origins, insecure_no_key=insecure_no_key))
        self._thread = threading.Thread(target=self._server.run, name="tunery-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def start(self, timeout: float = 30.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
