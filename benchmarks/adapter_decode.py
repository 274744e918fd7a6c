"""Decode speed of compiled copies with a LoRA adapter active, in process, side by side.

Made to price a change to the LoRA side path of ``tunery.compiled.lora`` (layout 3 gives it one
extra zero row, so an adapter's answer does not depend on its batch): pass a copy built before and
one built after, and one ``.onnx_adapter`` whose inputs both have. Rounds alternate between the
copies, so a machine that slows down slows both; each figure is the median of four rounds. Without
``--adapter`` only the rounds with no adapter active run, so a copy with no LoRA inputs at all
(``tunery.compiled.onnx_build.build_onnx`` alone) can stand beside them.

    python benchmarks/adapter_decode.py OLD_COPY NEW_COPY [--adapter FILE.onnx_adapter]

Copies live under ``TUNERY_HOME/compiled``, their adapters under each copy's ``adapters/``. This
version of tunery builds layout 3 only; a layout-2 copy comes from a checkout before 677e148.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("copies", nargs="+", type=Path, help="compiled copy folders (with model.onnx)")
    ap.add_argument("--adapter", type=Path,
                    help="an .onnx_adapter all the copies take (without it: no-adapter rounds only)")
    ap.add_argument("--prompt-tokens", type=int, default=60)
    ap.add_argument("--tokens", type=int, default=128, help="tokens decoded per row")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()

    import onnxruntime_genai as og

    from tunery.runtime import genai_model

    prompts = np.random.default_rng(0).integers(100, 5000, size=(max(args.batches), args.prompt_tokens))
    loaded = {}
    for copy in args.copies:
        model = genai_model(copy)
        adapters = None
        if args.adapter is not None:
            adapters = og.Adapters(model)
            adapters.load(str(args.adapter), "a")
        loaded[copy] = (model, adapters)

    def tokens_per_s(copy: Path, batch: int, adapter: bool) -> float:
        model, adapters = loaded[copy]
        params = og.GeneratorParams(model)
        length = args.prompt_tokens + args.tokens
        params.set_search_options(max_length=length, min_length=length, do_sample=False, batch_size=batch)
        gen = og.Generator(model, params)
        if adapter:
            gen.set_active_adapter(adapters, "a")
        gen.append_tokens(prompts[:batch].astype(np.int32))
        start, steps = time.perf_counter(), 0
        while not gen.is_done():
            gen.generate_next_token()
            steps += 1
        return batch * steps / (time.perf_counter() - start)

    for adapter in (True, False) if args.adapter is not None else (False,):
        for batch in args.batches:
            for copy in args.copies:  # warm-up
                tokens_per_s(copy, batch, adapter)
            runs: dict[Path, list[float]] = {c: [] for c in args.copies}
            for r in range(args.rounds):
                for copy in (args.copies if r % 2 == 0 else args.copies[::-1]):
                    runs[copy].append(tokens_per_s(copy, batch, adapter))
            label = "adapter" if adapter else "no adapter"
            print(f"{label}, batch {batch}: " + "; ".join(
                f"{c.name} {statistics.median(v):.1f} tokens/s ({', '.join(f'{x:.0f}' for x in v)})"
                for c, v in runs.items()), flush=True)


if __name__ == "__main__":
    main()
