"""Tiny randomly initialised models with a small byte-level BPE tokenizer, built locally and
deterministically in a second. They serve the fast tests and dry runs.

The default is a Llama with SmolLM2's chat template. The other families (:data:`FAMILIES`) are
what people fine-tune beside it (Qwen2, Qwen3, Phi-3, Gemma 2 and 3, Mistral): each has its own
architecture class, special tokens and a chat template written after the family's own, quirks
included (Gemma has no system role, Phi-3 ends a conversation with the end-of-text token, Qwen3
drops earlier turns' <think> blocks, Mistral moves the system message to the last user turn). The
templates live in ``templates/``. They let the test matrix run every stage on every family with
nothing downloaded."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunery.home import atomic_write_json
from tunery.models.catalog import CHATML_TEMPLATE

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_CORPUS = """\
Rome, Paris, Lisbon, Kyoto, Cairo, Lima and Oslo are cities people love to visit.
What is the best time of year to travel? Spring and autumn are mild; summer is busy.
I can help you plan an itinerary, find museums, parks, markets, and local festivals.
Would you like tips about trains, buses, walking tours, or the weather in the region?
Hello! How can I help you today? Where would you like to go next, and for how long?
The quick brown fox jumps over the lazy dog. 0123456789 + - * / = ( ) [ ] { } : ; , . ! ? ' "
system user assistant You are a helpful assistant. Thank you, that sounds wonderful!
"""


@dataclass(frozen=True)
class Family:
    """How to build one family's tiny model: its transformers classes, special tokens (bos, eos,
    pad, then the rest) and chat template (None: SmolLM2's)."""

    config: str
    model: str
    specials: tuple[str, ...]
    template: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    end_of_turn: str | None = None
    """The token that ends an assistant turn where it is not eos (generation stops on both)."""


FAMILIES: dict[str, Family] = {
    "llama": Family("LlamaConfig", "LlamaForCausalLM", ("<|im_start|>", "<|im_end|>", "<|im_end|>", "<|endoftext|>")),
    "qwen2": Family("Qwen2Config", "Qwen2ForCausalLM", ("<|endoftext|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>"),
                    "qwen2", end_of_turn="<|im_end|>"),
    "qwen3": Family("Qwen3Config", "Qwen3ForCausalLM", ("<|endoftext|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>"),
                    "qwen3", {"head_dim": 128}, "<|im_end|>"),  # as every Qwen3 (transformers reads no other from a GGUF)
    "phi3": Family("Phi3Config", "Phi3ForCausalLM",
                   ("<s>", "<|endoftext|>", "<|endoftext|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"),
                   "phi3", {"original_max_position_embeddings": 1024}, "<|end|>"),  # as -4k: no long-context RoPE
    "gemma2": Family("Gemma2Config", "Gemma2ForCausalLM",
                     ("<bos>", "<eos>", "<pad>", "<start_of_turn>", "<end_of_turn>"), "gemma2",
                     {"head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": 64}, "<end_of_turn>"),
    "gemma3": Family("Gemma3TextConfig", "Gemma3ForCausalLM",
                     ("<bos>", "<eos>", "<pad>", "<start_of_turn>", "<end_of_turn>"), "gemma3",
                     {"head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": 64}, "<end_of_turn>"),
    "mistral": Family("MistralConfig", "MistralForCausalLM", ("<s>", "</s>", "</s>", "<unk>"), "mistral",
                      {"sliding_window": None}),  # as v0.2 and later
}
"""The families a tiny model can be built for, by ``model_type``."""

def family_template(name: str) -> str:
    """The chat template written for family ``name``'s tiny model."""
    return (Path(__file__).with_name("templates") / f"{name}.jinja").read_text(encoding="utf-8")


def build_tiny_model(out_dir: Path, *, seed: int = 0, vocab_size: int = 512, arch: str = "llama") -> Path:
    """Write a complete Hugging Face model folder (config, safetensors, tokenizer, chat template)
    of the family ``arch`` (a key of :data:`FAMILIES`)."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GenerationConfig, PreTrainedTokenizerFast

    if arch not in FAMILIES:
        raise ValueError(f"no tiny model for architecture {arch!r}; known: {', '.join(FAMILIES)}")
    fam = FAMILIES[arch]
    specials = list(dict.fromkeys(SPECIAL_TOKENS if arch == "llama" else fam.specials))

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS.splitlines() * 4, trainer=trainer)
    bos, eos, pad = fam.specials[:3]
    # byte-level BPE has no unknown tokens; the Llama keeps the one it always had (same vocabulary)
    unk = {"unk_token": "<|endoftext|>"} if arch == "llama" else {}
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad, **unk)
    fast.chat_template = CHATML_TEMPLATE if fam.template is None else family_template(fam.template)
    fast.save_pretrained(out_dir)

    eos_ids = [fast.eos_token_id]
    if fam.end_of_turn:
        eos_ids.append(fast.convert_tokens_to_ids(fam.end_of_turn))
    config = getattr(transformers, fam.config)(
        vocab_size=tok.get_vocab_size(), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, rms_norm_eps=1e-5,
        tie_word_embeddings=True, bos_token_id=fast.bos_token_id, eos_token_id=eos_ids[0] if len(eos_ids) == 1 else eos_ids,
        pad_token_id=fast.pad_token_id, **fam.extra,
    )
    torch.manual_seed(seed)
    model = getattr(transformers, fam.model)(config)
    model.save_pretrained(out_dir)
    GenerationConfig(bos_token_id=fast.bos_token_id, eos_token_id=eos_ids if len(eos_ids) > 1 else eos_ids[0],
                     pad_token_id=fast.pad_token_id, do_sample=False).save_pretrained(out_dir)
    atomic_write_json(out_dir / "tunery.json", {"source": "builtin-tiny", "seed": seed, "arch": arch})
    return out_dir

