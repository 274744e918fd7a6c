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


def _config(host: str, port: int, api_keys: Iterable[str], worker: bool, log_level: str) -> Any:
    import uvicorn

    from tunery.server.app import create_app

    return uvicorn.Config(create_app(api_keys=api_keys, worker=worker), host=host, port=port,
                          log_level=log_level, access_log=log_level == "debug", timeout_graceful_shutdown=5)


def serve(host: str = "127.0.0.1", port: int = 8000, *, api_keys: Iterable[str] = (), worker: bool = True,
          log_level: str = "info") -> None:
    """Serve until interrupted."""
    import uvicorn

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as e:
        raise InvalidInput(f"cannot listen on {host}:{port}: {e.strerror}", param="port",
                           hint="pick another port with --port") from e
    uvicorn.Server(_config(host, port, api_keys, worker, log_level)).run()


class ServerThread:
    """The server on a background thread: ``with ServerThread() as s: ... s.base_url``."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, *, api_keys: Iterable[str] = (),
                 worker: bool = False, log_level: str = "warning") -> None:
        import uvicorn

        self.host, self.port = host, port or free_port(host)
        self._server = uvicorn.Server(_config(self.host, self.port, api_keys, worker, log_level))
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
