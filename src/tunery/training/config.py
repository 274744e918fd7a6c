"""Training settings: the OpenAI-style hyperparameters (each may be ``auto``) and how ``auto`` is
resolved, plus the method settings (LoRA or full) and internal defaults.

What ``auto`` picks (documented in the README too):

* ``n_epochs``: 2, raised or lowered so that examples x epochs lands in [100, 2500]
  (e.g. 20 examples -> 5 epochs, 40 -> 3, 82 -> 2, 5000 -> 1), capped to [1, 25].
* ``batch_size``: about one tenth of the examples, rounded down to a power of two, within
  [1, 16] (e.g. 15 -> 1, 40 -> 4, 82 -> 8, 1000 -> 16).
* ``learning_rate_multiplier``: 1.0. The multiplier multiplies the base learning rate recorded per
  catalog model and method (``lora_learning_rate`` or ``full_learning_rate``, see
  ``tunery models show``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tunery.errors import InvalidInput
from tunery.models.catalog import TrainingDefaults

Auto = Literal["auto"]
Method = Literal["lora", "full"]


def auto_n_epochs(n_examples: int) -> int:
    epochs = 2
    if n_examples * epochs < 100:
        epochs = math.ceil(100 / max(n_examples, 1))
    elif n_examples * epochs > 2500:
        epochs = max(1, 2500 // n_examples)
    return max(1, min(25, epochs))


def auto_batch_size(n_examples: int) -> int:
    target = max(1, n_examples // 10)
    return max(1, min(16, 2 ** int(math.log2(target))))


def _parse(name: str, value: Any, kind: type, low: float, high: float) -> Any:
    """``auto``/None pass through; otherwise a number of ``kind`` within [low, high]."""
    if value is None or value == "auto":
        return "auto"
    if isinstance(value, bool):
        raise InvalidInput(f"{name} must be 'auto' or a number, not a boolean", param=f"hyperparameters.{name}")
    try:
        num = kind(value)
        if kind is int and float(value) != num:
            raise ValueError
    except (TypeError, ValueError):
        what = "an integer" if kind is int else "a number"
        raise InvalidInput(f"{name} must be 'auto' or {what}, not {value!r}",
                           param=f"hyperparameters.{name}") from None
    if not (low <= num <= high) or (isinstance(num, float) and not math.isfinite(num)):
        raise InvalidInput(f"{name} must be between {low:g} and {high:g}, not {value!r}",
                           param=f"hyperparameters.{name}")
    return num


@dataclass(frozen=True)
class Hyperparameters:
    """As in the OpenAI fine-tuning API; each may be ``auto``."""

    n_epochs: int | Auto = "auto"
    batch_size: int | Auto = "auto"
    learning_rate_multiplier: float | Auto = "auto"

    @classmethod
    def parse(cls, d: dict[str, Any] | None) -> Hyperparameters:
        d = dict(d or {})
        unknown = set(d) - {"n_epochs", "batch_size", "learning_rate_multiplier"}
        if unknown:
            raise InvalidInput(f"unknown hyperparameter {sorted(unknown)[0]!r}; known: n_epochs, batch_size, "
                               "learning_rate_multiplier", param=f"hyperparameters.{sorted(unknown)[0]}")
        return cls(n_epochs=_parse("n_epochs", d.get("n_epochs"), int, 1, 50),
                   batch_size=_parse("batch_size", d.get("batch_size"), int, 1, 256),
                   learning_rate_multiplier=_parse("learning_rate_multiplier", d.get("learning_rate_multiplier"),
                                                   float, 1e-4, 100.0))

    def resolve(self, n_examples: int) -> ResolvedHyperparameters:
        return ResolvedHyperparameters(
            n_epochs=auto_n_epochs(n_examples) if self.n_epochs == "auto" else int(self.n_epochs),
            batch_size=auto_batch_size(n_examples) if self.batch_size == "auto" else int(self.batch_size),
            learning_rate_multiplier=1.0 if self.learning_rate_multiplier == "auto"
            else float(self.learning_rate_multiplier),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ResolvedHyperparameters:
    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _layers(value: Any) -> tuple[int, ...] | None:
    """``None``/``"all"`` for every layer, else a list of layer indices."""
    if value is None or value == "all":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    try:
        if isinstance(value, str) or any(isinstance(i, bool) or float(i) != int(i) for i in value):
            raise ValueError
        layers = tuple(sorted({int(i) for i in value}))
    except (TypeError, ValueError):
        raise InvalidInput(f"LoRA layers must be 'all' or a list of layer indices, not {value!r}",
                           param="lora.layers") from None
    if not layers or any(i < 0 for i in layers):
        raise InvalidInput(f"LoRA layers must be 'all' or non-negative layer indices, not {value!r}",
                           param="lora.layers")
    return layers


def check_layer_range(layers: tuple[int, ...] | None, n_layers: int, model: str) -> None:
    """Adapter layers must exist in the model: indices below its ``num_hidden_layers``."""
    if layers and max(layers) >= n_layers:
        raise InvalidInput(f"LoRA layers must be between 0 and {n_layers - 1} for {model}, not {list(layers)}",
                           param="lora.layers")


@dataclass(frozen=True)
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    layers: tuple[int, ...] | None = None
    """Decoder layers that get adapters (None: all). Adapting only upper layers trains faster: the
    frozen layers below run once per example, not once per step (see ``training.frozen``)."""

    @classmethod
    def from_defaults(cls, d: TrainingDefaults, overrides: dict[str, Any] | None = None) -> LoraSettings:
        o = overrides or {}
        try:
            s = cls(r=int(o.get("r", d.lora_r)), alpha=int(o.get("alpha", d.lora_alpha)),
                    dropout=float(o.get("dropout", d.lora_dropout)),
                    target_modules=tuple(str(t) for t in o.get("target_modules", d.lora_target_modules)),
                    layers=_layers(o.get("layers", d.lora_layers)))
        except (TypeError, ValueError):
            raise InvalidInput("LoRA settings need an integer r and alpha, a number dropout and a list of target "
                               f"modules, not {o!r}", param="lora") from None
        if s.r < 1 or s.alpha < 1 or not (0 <= s.dropout < 1) or not s.target_modules:
            raise InvalidInput("LoRA settings need r >= 1, alpha >= 1, 0 <= dropout < 1 and target modules",
                               param="lora")
        return s


@dataclass(frozen=True)
class TrainingConfig:
    """Everything the trainer needs, resolved: no ``auto`` left."""

    method: Method
    n_epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    max_seq_length: int
    lora: LoraSettings = field(default_factory=LoraSettings)
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    micro_batch_tokens: int = 4096
    """Micro-batches are cut to about this many (padded) tokens; gradients accumulate over them, so
    the optimizer step is the same whatever the cut."""
    checkpoint_every: int = 0
    """Save a checkpoint every N optimizer steps (0: only at epoch ends)."""
    keep_checkpoints: int = 3
    epoch_checkpoints: bool = True
    """Also save a checkpoint at each epoch end (benchmarks turn this off)."""
    eval_every: int = 10
    cache_frozen_layers: bool = True
    """Keep the output of frozen lower layers per example instead of recomputing it every step."""
    precision: Literal["fp32", "bf16"] = "fp32"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lora"]["target_modules"] = list(self.lora.target_modules)
        d["lora"]["layers"] = list(self.lora.layers) if self.lora.layers else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainingConfig:
        d = dict(d)
        lora = d.pop("lora", {}) or {}
        return cls(**d, lora=LoraSettings(r=lora.get("r", 16), alpha=lora.get("alpha", 32),
                                          dropout=lora.get("dropout", 0.0),
                                          target_modules=tuple(lora.get("target_modules", LoraSettings.target_modules)),
                                          layers=_layers(lora.get("layers"))))
