"""A cold `tunery ask` on the fast path imports neither torch nor transformers: the compiled copy runs
in onnxruntime-genai and the tokenizer is the light one (``tunery.models.light_tokenizer``), once
its files agreed with transformers' tokenizer; without that verdict it loads through the class
``AutoTokenizer`` chose before, not through ``AutoTokenizer`` itself, whose config module imports torch. Timings are in
benchmarks/, not here; this guards the imports that made a cold start slow."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# The real command in a fresh interpreter; on the way out it names the heavy packages it imported.
ASK = """
import atexit, sys
atexit.register(lambda: print("IMPORTED", sorted(m for m in ("torch", "peft", "transformers") if m in sys.modules), file=sys.stderr))
sys.argv = ["tunery", "ask", sys.argv[1], "Where to?", "--max-tokens", "5", "--temperature", "0"]
from tunery.cli.main import main
main()
"""


def _ask(model: str) -> tuple[str, str]:
    r = subprocess.run([sys.executable, "-c", ASK, model], capture_output=True, text=True, timeout=600,
                       env={**os.environ})
    assert r.returncode == 0, r.stderr
    imported = [line for line in r.stderr.splitlines() if line.startswith("IMPORTED")]
    assert len(imported) == 1, r.stderr
    return r.stdout, imported[0]


@pytest.mark.parametrize("model", ["tiny-random", "tiny-ft-0"])
def test_a_warm_ask_on_the_fast_path_imports_no_torch_nor_transformers(tiny_loras, model):
    import json

    from tunery.home import home
    from tunery.models.loading import LIGHT_TOKENIZERS, TOKENIZER_CLASSES

    # the first run may build the compiled copy and convert the adapter, learns the tokenizer's
    # class and checks the light tokenizer against transformers'
    first, _ = _ask(model)
    assert (home().cache / TOKENIZER_CLASSES).exists()
    assert all((home().cache / "light-tokenizers" / f"{name}.json").is_file()  # each agreed: its snapshot is kept
               for name in json.loads((home().cache / LIGHT_TOKENIZERS).read_text()).values())
    again, imported = _ask(model)
    assert imported == "IMPORTED []"
    assert again == first != ""  # the same greedy answer as the first run's, through transformers


def test_loading_a_lora_fine_tune_warns_nothing(tiny_loras):
    """PEFT reads a property transformers deprecated whenever it wraps a model; the FutureWarning
    reached every fp32 `ask` and eval of a fine-tune."""
    import warnings

    from tunery.models.loading import load_model

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_model("tiny-ft-0")
    assert [str(w.message) for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))] == []
