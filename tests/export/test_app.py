"""examples/app (Lab 7): routing between a served "cloud" model and the on-device ONNX export,
both through the openai SDK, and the fallback when the server is down."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

APP_DIR = Path(__file__).resolve().parents[2] / "examples" / "app"
LONG = "Can you plan a three day itinerary for Rome with museums, food markets and a day trip please?"


@pytest.fixture(scope="module")
def app_module():
    sys.path.insert(0, str(APP_DIR))
    try:
        import app
        import ondevice
        yield app, ondevice
    finally:
        sys.path.remove(str(APP_DIR))


@pytest.fixture(scope="module")
def device(app_module, exports):
    client = app_module[1].on_device_client(exports[("onnx", "int4")].path)
    yield client
    client.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_routing_rule(app_module):
    route = app_module[0].route
    assert route("Where in Rome should I stay?") == "device"
    assert route("Help me plan my week?") == "cloud"  # a planning word
    assert route(LONG) == "cloud"


def test_short_questions_on_device_long_ones_in_the_cloud(app_module, device, tiny_model):
    import openai

    from tunery.server import ServerThread

    with ServerThread() as server:
        cloud = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)
        app = app_module[0].TravelApp(cloud, "tiny-random", device, max_tokens=6)
        short = app.ask("Where in Rome should I stay?")
        assert short.backend == "device" and not short.fell_back and short.text
        long = app.ask(LONG)
        assert long.backend == "cloud" and not long.fell_back and long.text
        backend, fell_back, pieces = app.stream("Hello! Lisbon or Oslo?")
        assert backend == "device" and not fell_back and "".join(pieces)


def test_cloud_down_falls_back_to_the_device(app_module, device):
    import openai

    cloud = openai.OpenAI(base_url=f"http://127.0.0.1:{_closed_port()}/v1", api_key="unused", max_retries=0,
                          timeout=5)
    app = app_module[0].TravelApp(cloud, "tiny-random", device, max_tokens=6)
    answer = app.ask(LONG)
    assert answer.backend == "device" and answer.fell_back and answer.text
    backend, fell_back, pieces = app.stream(LONG)
    assert (backend, fell_back) == ("device", True) and "".join(pieces) == answer.text


def test_on_device_endpoint_speaks_openai_errors(device):
    import openai

    with pytest.raises(openai.BadRequestError, match="maximum context length"):
        device.chat.completions.create(model="on-device", messages=[{"role": "user", "content": "Rome " * 2000}])
