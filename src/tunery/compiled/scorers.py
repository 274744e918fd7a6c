"""Load an export back and run token ids through it, the same way for every format, so that the
verifier can compare it with the source model.

A scorer answers two questions: the next-token logits at every position of a sequence (teacher
forcing: for loss, perplexity and top-1 agreement), and the greedy continuation of a prompt (for
answer agreement). The PyTorch scorer serves the source model, the ``hf`` export and GGUF files
(``transformers`` dequantizes GGUF on load); the ONNX scorer runs the exported graph with ONNX
Runtime, greedy decoding through onnxruntime-genai, the same runtime the ONNX engine serves with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class Scorer(Protocol):
    def logits(self, ids: list[int]) -> np.ndarray:
        """``[len(ids), vocab]`` float32 logits: row ``i`` predicts token ``i + 1``."""
        ...

    def greedy(self, ids: list[int], n: int, stop_ids: frozenset[int]) -> list[int]:
        """Up to ``n`` greedy tokens after ``ids``, ending with the first stop token if one comes."""
        ...


class TorchScorer:
    def __init__(self, model: Any) -> None:
        self.model = model

    def logits(self, ids: list[int]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model(input_ids=torch.tensor([ids])).logits[0].float().numpy()

    def greedy(self, ids: list[int], n: int, stop_ids: frozenset[int]) -> list[int]:
        import torch

        out: list[int] = []
        past = None
        step = torch.tensor([ids])
        with torch.inference_mode():
            for _ in range(n):
                res = self.model(input_ids=step, cache=past, use_cache=True)
                past = res.cache
                token = int(res.logits[0, -1].argmax())
                out.append(token)
                if token in stop_ids:
                    break
                step = torch.tensor([[token]])
        return out


def load_torch(folder: Path, gguf_file: str | None = None) -> TorchScorer:
    """A plain HF folder, or a GGUF file in ``folder`` (dequantized to float32 by transformers)."""
    import torch
    from transformers import AutoModelForCausalLM

    from tunery.models.convert import quiet_gguf_reader

    kw = {"gguf_file": gguf_file} if gguf_file else {}
    with quiet_gguf_reader():
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, **kw)
    model.eval()
    return TorchScorer(model)


def decoder_feeds(session: Any, ids: list[int], kv: tuple[int, int]) -> dict[str, np.ndarray]:
    """Inputs for one whole sequence through a model-builder decoder: the ids, a full attention mask,
    positions from 0 and an empty KV cache (``kv``: key/value heads, head size)."""
    x = np.array([ids], dtype=np.int64)
    feeds: dict[str, np.ndarray] = {}
    for inp in session.get_inputs():
        if inp.name == "input_ids":
            feeds[inp.name] = x
        elif inp.name == "attention_mask":
            feeds[inp.name] = np.ones_like(x)
        elif inp.name == "position_ids":
            feeds[inp.name] = np.arange(len(ids), dtype=np.int64)[None, :]
        elif inp.name.startswith("past_key_values"):
            dtype = np.float16 if "float16" in inp.type else np.float32
            feeds[inp.name] = np.zeros((1, kv[0], 0, kv[1]), dtype=dtype)
    return feeds


def kv_shape(folder: Path) -> tuple[int, int]:
    """(key/value heads, head size) of a model-builder export, from its ``genai_config.json``."""
    dec = json.loads((Path(folder) / "genai_config.json").read_text())["model"]["decoder"]
    return int(dec["num_key_value_heads"]), int(dec["head_size"])


class OnnxScorer:
    """An onnxruntime-genai export folder (``model.onnx`` + ``genai_config.json``); with
    ``adapter``, a compiled copy with that ``.onnx_adapter`` active (a LoRA fine-tune as served)."""

    def __init__(self, folder: Path, adapter: Path | None = None) -> None:
        import onnxruntime as ort

        from tunery.runtime import genai_model, ort_session

        self.folder = Path(folder)
        dec = json.loads((self.folder / "genai_config.json").read_text())["model"]["decoder"]
        self.session = ort_session(self.folder / dec["filename"])
        self._kv = kv_shape(self.folder)
        self.model = genai_model(self.folder)
        self._run_options = None
        self._adapter = adapter
        if adapter is not None:
            lora = ort.LoraAdapter()
            lora.Load(str(adapter))
            self._run_options = ort.RunOptions()
            self._run_options.add_active_adapter(lora)
            self._lora = lora  # the run options refer to it

    def logits(self, ids: list[int]) -> np.ndarray:
        out = self.session.run(["logits"], decoder_feeds(self.session, ids, self._kv), self._run_options)[0]
        return np.asarray(out[0], dtype=np.float32)

    def greedy(self, ids: list[int], n: int, stop_ids: frozenset[int]) -> list[int]:
        import onnxruntime_genai as og

        params = og.GeneratorParams(self.model)
        params.set_search_options(max_length=len(ids) + n, do_sample=False)
        gen = og.Generator(self.model, params)
        if self._adapter is not None:
            adapters = og.Adapters(self.model)
            adapters.load(str(self._adapter), "scored")
            gen.set_active_adapter(adapters, "scored")
        gen.append_tokens(np.array(ids, dtype=np.int32))
        out: list[int] = []
        while len(out) < n and not gen.is_done():
            gen.generate_next_token()
            token = int(gen.get_next_tokens()[0])
            out.append(token)
            if token in stop_ids:
                break
        return out
