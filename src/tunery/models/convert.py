"""Turn a GGUF file into a plain, trainable Hugging Face model folder.

``transformers`` reads GGUF (dequantizing on the fly) but marks the result as quantized, so it can
be neither trained nor saved. We rebuild an ordinary model from the config and the dequantized
state dict, once, and cache it as safetensors; later loads take seconds."""

from __future__ import annotations

import contextlib
import functools
import logging
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

from tunery.errors import InvalidInput
from tunery.home import atomic_dir, atomic_write_json

_READER = threading.Lock()  # the GGUF reader's progress bar is swapped for one read at a time


@contextlib.contextmanager
def quiet_gguf_reader() -> Iterator[None]:
    """transformers read quietly: errors only in its log, and no progress bar of the GGUF reader,
    which draws its own tqdm bar (TQDM_DISABLE cannot silence it once tqdm is imported) line after
    line into a log; the CLI shows a spinner instead."""
    import transformers
    import transformers.modeling_gguf_pytorch_utils as gguf_reader

    quiet = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    with _READER:
        bar = getattr(gguf_reader, "tqdm", None)
        if bar is not None:
            gguf_reader.tqdm = functools.partial(bar, disable=True)
        try:
            yield
        finally:
            transformers.logging.set_verbosity(quiet)
            if bar is not None:
                gguf_reader.tqdm = bar


def gguf_to_hf(gguf_path: Path, out_dir: Path, *, source: str = "") -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise InvalidInput(f"GGUF file not found: {gguf_path}", param="path")
    folder, name = str(gguf_path.parent), gguf_path.name
    with quiet_gguf_reader():
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
            quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        except struct.error as e:  # the reader ran past the end of the file
            raise InvalidInput(f"{gguf_path} is not a readable GGUF file: the GGUF reader said {e}",
                               param="path", hint="the file may be cut short; copy it again") from None
        except (ValueError, KeyError, OSError) as e:
            raise InvalidInput(f"cannot read {gguf_path} as a GGUF chat model: {e}", param="path") from e

    config = AutoConfig.for_model(**{k: v for k, v in quantized.config.to_dict().items()
                                     if k not in ("quantization_config", "_name_or_path", "transformers_version")})
    config.dtype = torch.float32
    state = {k: v.detach().to(torch.float32).contiguous() for k, v in quantized.state_dict().items()}
    del quantized
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(state, strict=False, assign=True)
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    missing = [n for n, p in model.named_parameters() if p.is_meta]
    if missing:
        raise InvalidInput(f"GGUF file {gguf_path} lacks weights for {missing[:3]}", param="path")
    model.eval()

    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    eos = [tokenizer.eos_token_id]
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id and im_end not in eos:
        eos.append(im_end)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=eos if len(eos) > 1 else eos[0],
                         pad_token_id=tokenizer.pad_token_id, do_sample=False).save_pretrained(tmp)
        atomic_write_json(tmp / "tunery.json", {"source": source or str(gguf_path),
                                                "converted_from": gguf_path.name})
    return Path(out_dir)
