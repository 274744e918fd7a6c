"""A tiny randomly initialised Llama with a small byte-level BPE tokenizer and SmolLM2's chat
template, built locally and deterministically. It serves the fast tests and dry runs."""

from __future__ import annotations

from pathlib import Path

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


def build_tiny_model(out_dir: Path, *, seed: int = 0, vocab_size: int = 512) -> Path:
    """Write a complete Hugging Face model folder (config, safetensors, tokenizer, chat template)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS.splitlines() * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   unk_token="<|endoftext|>", pad_token="<|im_end|>")
    fast.chat_template = CHATML_TEMPLATE
    fast.save_pretrained(out_dir)

    config = LlamaConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, rms_norm_eps=1e-5,
        tie_word_embeddings=True, bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out_dir)
    GenerationConfig(bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                     pad_token_id=fast.pad_token_id, do_sample=False).save_pretrained(out_dir)
    atomic_write_json(out_dir / "tunery.json", {"source": "builtin-tiny", "seed": seed})
    return out_dir

