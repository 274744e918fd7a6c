"""Training settings: the OpenAI-style hyperparameters (each may be ``auto``) and how ``auto`` is
resolved, the LoRA settings a request may give, and the resolved configuration the trainer runs.

The request-side models (:class:`Hyperparameters`, :class:`LoraSpec`) are pydantic models that
forbid unknown keys; their field descriptions are the help text of the API schema and of
``tunery finetune``'s options. A fine-tuning job's whole request is ``tunery.jobs.spec``; it is
resolved into the plain :class:`TrainingConfig` here, with nothing left ``auto``.

What ``auto`` picks (documented in the README too):

* ``n_epochs``: 3, as OpenAI's ``auto`` targets, raised or lowered so that examples x epochs lands
  in [100, 2500] (e.g. 20 examples -> 5 epochs, 40 -> 3, 229 -> 3, 900 -> 2, 5000 -> 1), capped to
  [1, 25]. The target was 2 until the bundled travel data's quickstart was scored with right-padded
  batches: at 2 epochs its fine-tune named a business on 18% (int8) and 12% (fp32) of the decline
  questions, at 3 epochs on 3-6% (benchmarks/RESULTS.md, issue 15). DPO keeps 2
  (:data:`DPO_TARGET_EPOCHS`).
* ``batch_size``: about one tenth of the examples, rounded down to a power of two, within
  [1, 8] (e.g. 15 -> 1, 40 -> 4, 82 -> 8, 1000 -> 8). The cap was 16 until the bundled travel
  data grew to 229 examples: batch 16 (30 steps) left 27% of its allowed answers running on to
  the token limit and refused 12%, batch 8 (58 steps) 0% and 6% (benchmarks/RESULTS.md; scored on
  the left-padded batches of the fast path before its fix).
* ``learning_rate_multiplier``: 1.0. The multiplier multiplies the base learning rate recorded per
  catalog model and method (``lora_learning_rate`` or ``full_learning_rate``, see
  ``tunery models show``).
* ``beta`` (DPO only): :data:`DEFAULT_BETA`, 0.1. DPO's base learning rate is the method's
  (LoRA or full) times :data:`DPO_LEARNING_RATE_SCALE`, 0.1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from tunery.errors import InvalidInput, invalid_request
from tunery.models.catalog import TrainingDefaults

Auto = Literal["auto"]
Method = Literal["lora", "full"]

STRICT = ConfigDict(extra="forbid", strict=True)
"""Every request model: an unknown key is an error (a misspelt setting never falls back to a
default unnoticed), and no silent coercion of types."""

DEFAULT_BETA = 0.1
"""What DPO's ``beta: auto`` resolves to: TRL's default and the DPO paper's usual value (OpenAI does
not publish what its ``auto`` picks). Lower lets the model move further from where it started."""

DPO_LEARNING_RATE_SCALE = 0.1
"""DPO's base learning rate relative to supervised fine-tuning's. Measured on the travel pairs
(benchmarks/RESULTS.md, issue 18): at SmolLM2's supervised LoRA rate (2e-3) one epoch drove the
reward margin to 6 and the model into run-on answers; at a tenth of it, held-out preference
accuracy was 100% with the style loss unchanged."""

MAX_LORA_RANK = 1024
_DEFAULT = "Default from the model's catalog entry (`tunery models show`)."


def problem(text: str) -> PydanticCustomError:
    """A validation error whose message is ``text`` (named by its field's path where it is shown)."""
    return PydanticCustomError("invalid_value", "{problem}", {"problem": text})


def parse_model(model: type[BaseModel], data: Any, *, param: str | None = None) -> Any:
    """``model`` validated from ``data``; a problem raises :class:`InvalidInput` naming its path
    (under ``param``, where the object sits in a larger request)."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise invalid_request(e.errors(include_url=False), prefix=param) from None


TARGET_EPOCHS = 3
DPO_TARGET_EPOCHS = 2
"""DPO's ``auto`` epochs before the [100, 2500] bounds: what its runs were measured at (issue 18)."""


def auto_n_epochs(n_examples: int, target: int = TARGET_EPOCHS) -> int:
    epochs = target
    if n_examples * epochs < 100:
        epochs = math.ceil(100 / max(n_examples, 1))
    elif n_examples * epochs > 2500:
        epochs = max(1, 2500 // n_examples)
    return max(1, min(25, epochs))


AUTO_BATCH_CAP = 8


def auto_batch_size(n_examples: int) -> int:
    target = max(1, n_examples // 10)
    return max(1, min(AUTO_BATCH_CAP, 2 ** int(math.log2(target))))


def _auto_or(kind: type, low: float, high: float):
    """A before-validator: ``auto``/None pass as ``auto``; otherwise a number of ``kind`` (numeric
    strings included, as the OpenAI API takes them) within [low, high]."""

    def check(value: Any) -> Any:
        if value is None or value == "auto":
            return "auto"
        if isinstance(value, bool):
            raise problem("must be 'auto' or a number, not a boolean")
        try:
            num = kind(value)
            if kind is int and float(value) != num:
                raise ValueError
        except (TypeError, ValueError, OverflowError):  # OverflowError: int(Infinity)
            raise problem(f"must be 'auto' or {'an integer' if kind is int else 'a number'}, "
                          f"not {value!r}") from None
        if not (low <= num <= high) or (isinstance(num, float) and not math.isfinite(num)):
            raise problem(f"must be between {low:g} and {high:g}, not {value!r}")
        return num

    return BeforeValidator(check)


class Hyperparameters(BaseModel):
    """As in the OpenAI fine-tuning API; each may be ``auto``."""

    model_config = ConfigDict(**STRICT, frozen=True)

    n_epochs: Annotated[int | Auto, _auto_or(int, 1, 50)] = Field(
        "auto", description="Passes over the training data (1-50), or auto: 3 (2 for DPO), adjusted so that "
                            "examples x epochs lands in [100, 2500], within [1, 25].")
    batch_size: Annotated[int | Auto, _auto_or(int, 1, 256)] = Field(
        "auto", description="Examples per optimizer step (1-256, at most the number of training examples), "
                            "or auto: about examples / 10, rounded down to a power of two, within [1, 8].")
    learning_rate_multiplier: Annotated[float | Auto, _auto_or(float, 1e-4, 100.0)] = Field(
        "auto", description="Multiplies the model's base learning rate for the method (see `tunery models "
                            "show`), between 0.0001 and 100, or auto: 1.0.")

    @classmethod
    def parse(cls, d: Mapping[str, Any] | None) -> Hyperparameters:
        """Validated hyperparameters; a bad one raises :class:`InvalidInput` naming
        ``hyperparameters.<name>``."""
        return parse_model(cls, dict(d or {}), param="hyperparameters")

    _target_epochs: ClassVar[int] = TARGET_EPOCHS

    def resolve(self, n_examples: int) -> ResolvedHyperparameters:
        return ResolvedHyperparameters(
            n_epochs=auto_n_epochs(n_examples, self._target_epochs) if self.n_epochs == "auto" else int(self.n_epochs),
            batch_size=auto_batch_size(n_examples) if self.batch_size == "auto" else int(self.batch_size),
            learning_rate_multiplier=1.0 if self.learning_rate_multiplier == "auto"
            else float(self.learning_rate_multiplier),
        )

    def check_examples(self, n_examples: int) -> None:
        """A batch cannot hold more examples than the training file has (``auto`` never asks for
        more)."""
        if self.batch_size != "auto" and self.batch_size > n_examples:
            raise InvalidInput(f"batch_size {self.batch_size} is larger than the {n_examples} training examples",
                               param="hyperparameters.batch_size",
                               hint=f"use a batch size of at most {n_examples}, or auto")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


class DPOHyperparameters(Hyperparameters):
    """OpenAI's DPO hyperparameters: those of supervised fine-tuning and ``beta``."""

    _target_epochs: ClassVar[int] = DPO_TARGET_EPOCHS

    beta: Annotated[float | Auto, _auto_or(float, 1e-3, 2.0)] = Field(
        "auto", description=f"How far DPO may move the model from where it started: lower moves it further "
                            f"(0.001-2), or auto: {DEFAULT_BETA}.")

    @classmethod
    def parse(cls, d: Mapping[str, Any] | None) -> DPOHyperparameters:
        return parse_model(cls, dict(d or {}), param="hyperparameters")

    def resolve(self, n_examples: int) -> ResolvedHyperparameters:
        hp = super().resolve(n_examples)
        return ResolvedHyperparameters(hp.n_epochs, hp.batch_size, hp.learning_rate_multiplier,
                                       beta=DEFAULT_BETA if self.beta == "auto" else float(self.beta))


@dataclass(frozen=True)
class ResolvedHyperparameters:
    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float
    beta: float | None = None
    """DPO's; None for supervised fine-tuning."""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _layer_list(value: Any) -> Any:
    """``all``, a layer index or a list of them; anything else (a string of digits included) is
    an error that says what is wanted."""
    if value is None or value == "all":
        return value
    items = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(items, list | tuple) or any(isinstance(i, bool) or not isinstance(i, int) for i in items):
        raise problem(f"LoRA layers must be 'all' or a list of layer indices, not {value!r}")
    if not items or any(i < 0 for i in items):
        raise problem(f"LoRA layers must be 'all' or non-negative layer indices, not {value!r}")
    return sorted(set(items))


def _module_names(value: Any) -> Any:
    """A list of module names; a bare string would otherwise read as a list of its letters."""
    if value is not None and not isinstance(value, list | tuple):
        raise problem(f"must be a list of module names like [\"q_proj\", \"v_proj\"], not {value!r}")
    if value is not None and (not value or not all(isinstance(m, str) and m for m in value)):
        raise problem(f"must be a non-empty list of module names like [\"q_proj\", \"v_proj\"], not {value!r}")
    return None if value is None else list(value)


class LoraSpec(BaseModel):
    """LoRA settings as a request gives them (a tunery extension); each left out takes the model's
    catalog default (see ``tunery models show``)."""

    model_config = ConfigDict(**STRICT, frozen=True)

    r: int | None = Field(None, ge=1, le=MAX_LORA_RANK,
                          description=f"LoRA rank, the adapters' inner size (1-{MAX_LORA_RANK}). {_DEFAULT}")
    alpha: int | None = Field(None, ge=1, description=f"LoRA alpha: the adapters' output is scaled by alpha / r. "
                                                      f"{_DEFAULT}")
    dropout: float | None = Field(None, ge=0.0, lt=1.0, description=f"Dropout on the adapters' input, in [0, 1). "
                                                                    f"{_DEFAULT}")
    target_modules: Annotated[list[str] | None, BeforeValidator(_module_names)] = Field(
        None, description=f"Names of the linear layers that get adapters, a list such as [\"q_proj\", \"v_proj\"]. {_DEFAULT}")
    layers: Annotated[Literal["all"] | list[int] | None, BeforeValidator(_layer_list)] = Field(
        None, description="Decoder layers that get adapters: 'all', or a list of layer indices. Adapting only "
                          "upper layers trains faster. Default from the model's catalog entry (SmolLM2: the top "
                          "ten, 20-29; every layer when the training examples define tools).")

    @classmethod
    def parse(cls, d: Mapping[str, Any] | LoraSpec | None) -> LoraSpec:
        """Validated settings; a bad one raises :class:`InvalidInput` naming ``lora.<name>``."""
        return d if isinstance(d, LoraSpec) else parse_model(cls, {} if d is None else d, param="lora")


def check_layer_range(layers: tuple[int, ...] | list[int] | None, n_layers: int, model: str) -> None:
    """Adapter layers must exist in the model: indices below its ``num_hidden_layers``."""
    if layers and max(layers) >= n_layers:
        raise InvalidInput(f"LoRA layers must be between 0 and {n_layers - 1} for {model}, not {list(layers)}",
                           param="lora.layers")


FUSED_PROJECTIONS = {"q_proj": "qkv_proj", "k_proj": "qkv_proj", "v_proj": "qkv_proj", "gate_proj": "gate_up_proj",
                     "up_proj": "gate_up_proj"}
"""Projections that some families fuse into one matrix (Phi-3: qkv_proj, gate_up_proj): a target
named for the separate one adapts the fused one (``training.model.lora_targets``)."""


def check_target_modules(targets: Iterable[str], module_names: Iterable[str], model: str) -> None:
    """Adapter targets must name modules of the model that LoRA can adapt (``module_names``, see
    ``models.loading.lora_module_names``): the last part of a module's dotted name (``q_proj``), a
    dotted tail of it (``self_attn.q_proj``, as PEFT matches), or a projection the model fuses into
    one it has."""
    full = list(module_names)
    short = {n.rsplit(".", 1)[-1] for n in full}

    def known(t: str) -> bool:
        return t in short or FUSED_PROJECTIONS.get(t) in short or any(n == t or n.endswith("." + t) for n in full)

    unknown = [t for t in targets if not known(t)]
    if unknown:
        raise InvalidInput(f"LoRA target_modules {unknown} are not modules of {model} that LoRA can adapt; those "
                           f"are named {', '.join(sorted(short))}", param="lora.target_modules",
                           hint="pick from those names, or leave target_modules out for the model's default")


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
    def from_defaults(cls, d: TrainingDefaults, overrides: LoraSpec | Mapping[str, Any] | None = None,
                      *, tools: bool = False) -> LoraSettings:
        """The catalog's settings ``d`` with a request's ``overrides`` (validated here when a mapping);
        ``tools``: the training examples define tools, which takes the catalog's ``tool_lora_layers``."""
        o = LoraSpec.parse(overrides)
        default = d.tool_lora_layers if tools else d.lora_layers
        layers = default if o.layers is None else None if o.layers == "all" else o.layers
        return cls(r=d.lora_r if o.r is None else o.r, alpha=d.lora_alpha if o.alpha is None else o.alpha,
                   dropout=float(d.lora_dropout if o.dropout is None else o.dropout),
                   target_modules=tuple(d.lora_target_modules if o.target_modules is None else o.target_modules),
                   layers=tuple(sorted(set(layers))) if layers else None)


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
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """bf16 autocast or fp32; ``auto`` measures which is faster here (see ``training.precision``)."""
    sharding: Literal["auto", "ddp", "fsdp"] = "auto"
    """Under torchrun: every rank holds the whole model (ddp) or 1/N of it (fsdp, full fine-tunes);
    ``auto`` shards only what would not fit (see ``training.distributed.choose_sharding``)."""
    objective: Literal["supervised", "dpo"] = "supervised"
    """What is learnt: the assistant turns (supervised), or to prefer one answer of a pair (DPO)."""
    beta: float = DEFAULT_BETA
    """DPO's beta (unused by supervised training)."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lora"]["target_modules"] = list(self.lora.target_modules)
        d["lora"]["layers"] = list(self.lora.layers) if self.lora.layers else None
        return d
