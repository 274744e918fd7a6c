"""Browser fixtures for the studio: `tunery serve` as a real subprocess on a loopback port with the
tiny model registered in its own home (one server per test module), and headless Debian Chromium
driven by Playwright. Screenshots go to test-output/studio/ for a person to look at."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "studio"
VIEWPORT = {"width": 1366, "height": 860}


@dataclass
class Studio:
    url: str
    home: Path
    log: Path

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@dataclass
class PageWatch:
    """What a page did that a test should know about: script errors and requests elsewhere."""

    origin: str
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)

    def check(self) -> None:
        assert self.errors == [], f"errors in the page: {self.errors}"
        assert self.foreign == [], f"the page fetched from elsewhere: {self.foreign}"


def _register_tiny(home: Path, model_dir: Path) -> None:
    from tunery.models import ModelRecord, register
    from tunery.models.catalog import CATALOG

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNERY_HOME", str(home))
        register(ModelRecord(id="tiny-random", kind="base", path=model_dir, source="builtin-tiny",
                             meta={"catalog": "tiny-random", "context_length": CATALOG["tiny-random"].context_length}))


@pytest.fixture(autouse=True)
def _test_client_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """FastAPI's TestClient sends ``Host: testserver``, a name the server refuses unless told
    (DNS-rebinding protection): apps made in these tests accept it too."""
    monkeypatch.setenv("TUNERY_ALLOWED_HOSTS", "testserver")


@pytest.fixture(scope="module")
def studio(browser, tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Studio]:
    """`tunery serve` (with its job worker) in a home of its own holding the tiny model."""
    from tunery.server.run import free_port

    home = tmp_path_factory.mktemp("studio") / "home"
    _register_tiny(home, tiny_model_dir)
    port = free_port()
    log = home / "serve.log"
    env = {k: v for k, v in os.environ.items() if k != "TUNERY_API_KEY"}
    env["TUNERY_HOME"] = str(home)
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tunery.cli.main", "serve", "--port", str(port),
                                 "--log-level", "warning"], stdout=out, stderr=subprocess.STDOUT, env=env)
    studio = Studio(f"http://127.0.0.1:{port}", home, log)
    try:
        _wait_up(proc, studio)
        yield studio
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_up(proc: subprocess.Popen, studio: Studio) -> None:
    import httpx

    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, f"tunery serve exited:\n{studio.log_tail()}"
        try:
            if httpx.get(f"{studio.url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"tunery serve did not come up:\n{studio.log_tail()}"
        time.sleep(0.2)


@pytest.fixture
def studio_home(studio: Studio, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point this test process at the server's home (to seed data the studio then shows)."""
    monkeypatch.setenv("TUNERY_HOME", str(studio.home))
    return studio.home


@pytest.fixture
def watch(studio: Studio) -> PageWatch:
    return PageWatch(studio.url)


@pytest.fixture
def page(browser, studio: Studio, watch: PageWatch):
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.on("pageerror", lambda e: watch.errors.append(str(e)))
    # an API answering 4xx on purpose logs "Failed to load resource": that is no script error
    page.on("console", lambda m: m.type == "error" and "Failed to load resource" not in m.text
            and watch.errors.append(m.text))
    page.on("request", lambda r: None if r.url.startswith((studio.url, "data:", "blob:", "about:"))
            else watch.foreign.append(r.url))
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def shot():
    """``shot(page, name)`` saves test-output/studio/NAME.png."""

    def take(page, name: str, *, full_page: bool = False) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    return take
