"""The request that creates a fine-tuning job, typed once: OpenAI's job request (``model``,
``training_file``, ``validation_file``, ``method``, the deprecated top-level ``hyperparameters``,
``suffix``, ``seed``, ``metadata``) and tunery's extensions (``training_method``, ``lora``).

The HTTP route takes it as its body, ``tunery finetune`` builds it from its options (whose help
is the field descriptions below), ``jobs.create_job`` stores it, and the training process reads it
back and resolves it into a :class:`~tunery.training.config.TrainingConfig` in one place,
:meth:`FineTuneRequest.training_config`. An unknown key anywhere is an error that names its path.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tunery.models.catalog import TrainingDefaults
from tunery.training.config import (
    DPO_LEARNING_RATE_SCALE,
    STRICT,
    DPOHyperparameters,
    Hyperparameters,
    LoraSettings,
    LoraSpec,
    ResolvedHyperparameters,
    TrainingConfig,
    parse_model,
    problem,
)

MethodType = Literal["supervised", "dpo"]
"""The fine-tuning methods tunery runs; each has a settings model under the key of its name."""

EXTENSIONS = ("training_method", "lora", "nproc_per_node", "sharding", "precision")
"""tunery's settings beside OpenAI's; they apply to every method, so they live at the top level
of the request (a client may also put them in the method's settings, as the studio does)."""

SUFFIX_RE = re.compile(r"^[a-z0-9_-]{1,64}$")
MAX_SEED = 2**31 - 1
MAX_NPROC = 64


def _none_is_default(value: Any) -> Any:
    return {} if value is None else value


class Supervised(BaseModel):
    """The settings of supervised fine-tuning."""

    model_config = STRICT

    hyperparameters: Annotated[Hyperparameters, BeforeValidator(_none_is_default)] = Field(
        default_factory=Hyperparameters, description="n_epochs, batch_size and learning_rate_multiplier; each may "
                                                     "be auto.")


class DPO(BaseModel):
    """The settings of direct preference optimisation (the training file holds preference pairs)."""

    model_config = STRICT

    hyperparameters: Annotated[DPOHyperparameters, BeforeValidator(_none_is_default)] = Field(
        default_factory=DPOHyperparameters, description="beta, n_epochs, batch_size and learning_rate_multiplier; "
                                                        "each may be auto.")


class Method(BaseModel):
    """OpenAI's ``method``: a union tagged by ``type``, the chosen method's settings under the key
    of the same name (``{"type": "supervised", "supervised": {"hyperparameters": ...}}``).

    One object with a field per method rather than pydantic's discriminated ``Union``: that one
    puts the tag in every error location (``method.supervised.supervised.hyperparameters``), where
    this one names the path as the client wrote it. A method has its name in :data:`MethodType`,
    a settings model (``hyperparameters`` with its own, e.g. DPO's ``beta``, beside those of
    :class:`Hyperparameters`) and a field of that name here."""

    model_config = STRICT

    type: MethodType = Field("supervised", description="The fine-tuning method: supervised (the conversations' "
                                                       "assistant turns are the targets) or dpo (preference pairs: "
                                                       "prefer one answer over another).")
    supervised: Supervised | None = Field(None, description="Settings of supervised fine-tuning.")
    dpo: DPO | None = Field(None, description="Settings of DPO: beta and the supervised hyperparameters.")

    @model_validator(mode="after")
    def _settings_of_its_type(self) -> Method:
        for name in get_args(MethodType):
            if name != self.type and getattr(self, name) is not None:
                raise problem(f"settings for {name!r} are given but the method type is {self.type!r}")
        if getattr(self, self.type) is None:  # {"type": "supervised"} alone: the defaults
            annotation = type(self).model_fields[self.type].annotation
            setattr(self, self.type, next(a for a in get_args(annotation) if a is not type(None))())
        return self

    @property
    def settings(self) -> Supervised | DPO:
        return getattr(self, self.type)

    @property
    def hyperparameters(self) -> Hyperparameters:
        return self.settings.hyperparameters


def _suffix(value: Any) -> Any:
    if value is not None and (not isinstance(value, str) or not SUFFIX_RE.match(value)):
        raise problem(f"must be 1-64 characters of lowercase letters, digits, '-' and '_', not {value!r}")
    return value


MetadataKey = Annotated[str, StringConstraints(max_length=64)]
MetadataValue = Annotated[str, StringConstraints(max_length=512)]


class FineTuneRequest(BaseModel):
    """What a fine-tuning job is asked to do; ``training_method`` and ``lora`` are tunery's
    extensions of OpenAI's request. ``model``, ``training_file`` and ``validation_file``
    are checked against the registry and the file store when the job is created
    (``jobs.create_job``); everything else is checked here."""

    model_config = STRICT

    model: str = Field(min_length=1, description="The model to fine-tune: a base model (see `tunery models list "
                                                 "--all`) or a fine-tuned one (ft:...) to continue from.")
    training_file: str = Field(min_length=1, description="JSONL to train on (chat examples; preference pairs for "
                                                         "dpo): the id of a file uploaded with purpose fine-tune.")
    validation_file: str | None = Field(None, min_length=1,
                                        description="Held-out chat JSONL: validation loss and token accuracy are "
                                                    "computed on it while training.")
    method: Method = Field(default_factory=Method, description="The method and its hyperparameters, as "
                                                               "{\"type\": \"supervised\", \"supervised\": "
                                                               "{\"hyperparameters\": {...}}}.")
    hyperparameters: Hyperparameters | None = Field(None, description="Deprecated by OpenAI for the method's "
                                                                      "hyperparameters, still accepted.")
    suffix: Annotated[str | None, BeforeValidator(_suffix)] = Field(
        None, description="Up to 64 characters of a-z, 0-9, '-' and '_' in the fine-tuned model's name "
                          "(ft:<model>:<suffix>:<id>).")
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description=f"Random seed (0-{MAX_SEED}); the same seed, "
                                                                  "data and settings give the same model. Random "
                                                                  "when left out.")
    metadata: dict[MetadataKey, MetadataValue] | None = Field(
        None, max_length=16, description="Up to 16 string pairs (keys up to 64 characters, values up to 512) kept "
                                         "with the job.")
    training_method: Annotated[Literal["lora", "full"], BeforeValidator(lambda v: "lora" if v is None else v)] = Field(
        "lora", description="LoRA adapters (small and fast) or full fine-tuning (every weight trains).")
    lora: LoraSpec | None = Field(None, description="LoRA settings (r, alpha, dropout, target_modules, layers); "
                                                    "each left out takes the model's catalog default.")
    nproc_per_node: int | None = Field(None, ge=1, le=MAX_NPROC, description="Training processes, data-parallel "
                                       "through torchrun (one per GPU; on CPU they share the cores). The same "
                                       "batches and result as one process. Default: the worker's --nproc-per-node, "
                                       "else 1.")
    sharding: Literal["auto", "ddp", "fsdp"] = Field(
        "auto", description="With several processes: ddp (each holds the whole model) or fsdp (FSDP2: each holds "
                            "1/N of the weights, gradients and optimizer state; full supervised fine-tuning only). "
                            "auto: fsdp only on GPUs whose memory the ddp copies would not fit.")

    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="Training precision: auto (bf16 autocast where this machine measurably runs it faster "
                            "and the held-out loss agrees, else fp32), fp32 or bf16. The job's events say which "
                            "it used and why.")

    integrations: list[Any] | None = Field(None, description="OpenAI's hosted integrations (Weights & Biases): "
                                                            "none here; null or [] is taken, as SDKs send it.")

    @field_validator("integrations")
    @classmethod
    def _no_integrations(cls, integrations: list[Any] | None) -> None:
        if integrations:
            raise problem("integrations (Weights & Biases) are not available here: follow the job through its "
                          "events, its checkpoints' metrics and the studio's job page; leave integrations out")
        return None

    # Settings that depend on the method are checked as fields, after the method's (their order
    # above), so that a refusal names the setting it refuses, as ``param``.
    @field_validator("lora")
    @classmethod
    def _lora_for_lora(cls, lora: LoraSpec | None, info: ValidationInfo) -> LoraSpec | None:
        """A full fine-tune has no adapters: LoRA settings given with it would be silently ignored."""
        if lora is not None and lora != LoraSpec() and info.data.get("training_method") == "full":
            raise problem("LoRA settings do nothing in full fine-tuning: drop them, or use training_method lora")
        return lora

    @field_validator("nproc_per_node")
    @classmethod
    def _one_process_for_dpo(cls, nproc: int | None, info: ValidationInfo) -> int | None:
        method = info.data.get("method")
        if (nproc or 1) > 1 and method is not None and method.type == "dpo":
            raise problem("DPO trains in one process: leave nproc_per_node out (or 1)")
        return nproc

    @field_validator("sharding")
    @classmethod
    def _sharding_fits_the_method(cls, sharding: str, info: ValidationInfo) -> str:
        from tunery.training.distributed import sharding_problem

        method, training_method = info.data.get("method"), info.data.get("training_method")
        if method is None or training_method is None:  # refused already, for itself
            return sharding
        why = sharding_problem(sharding, method=training_method, objective=method.type)
        if why:
            raise problem(why)
        return sharding

    @model_validator(mode="before")
    @classmethod
    def _extensions_at_the_top(cls, data: Any) -> Any:
        """A method without a type is supervised (as before), and tunery's settings given in the
        method's settings move to the top level, where they are checked and stored."""
        if not isinstance(data, Mapping) or not isinstance(data.get("method"), Mapping):
            return data
        data, method = dict(data), dict(data["method"])
        method.setdefault("type", "supervised")
        settings = method.get(method["type"]) if isinstance(method["type"], str) else None
        if isinstance(settings, Mapping):
            settings = dict(settings)
            for key in EXTENSIONS:
                if key not in settings:
                    continue
                value = settings.pop(key)
                if data.get(key) is not None and data[key] != value:
                    raise problem(f"{key} is given twice, differently: at the top level and in "
                                  f"method.{method['type']}; give it once")
                data[key] = value
            method[method["type"]] = settings
        data["method"] = method
        return data

    @field_validator("hyperparameters")
    @classmethod
    def _given_once(cls, top: Hyperparameters | None, info: ValidationInfo) -> Hyperparameters | None:
        """One hyperparameter given both here and in the method, with different values, is an error
        rather than a silent choice."""
        method = info.data.get("method")
        if top is None or method is None:
            return top
        own = method.hyperparameters
        for name in sorted(top.model_fields_set & own.model_fields_set):
            if getattr(top, name) != getattr(own, name):
                raise problem(f"{name} is also given in method.{method.type}.hyperparameters, with another "
                              "value; give it once, in the method")
        return top

    @model_validator(mode="after")
    def _hyperparameters_in_the_method(self) -> FineTuneRequest:
        """The deprecated top-level hyperparameters join the method's, their one place from here on."""
        if self.hyperparameters is not None:
            settings = self.method.settings
            top = self.hyperparameters
            merged = settings.hyperparameters.model_copy(update={k: getattr(top, k) for k in top.model_fields_set})
            self.method = self.method.model_copy(update={
                self.method.type: settings.model_copy(update={"hyperparameters": merged})})
            self.hyperparameters = None
        return self

    @classmethod
    def parse(cls, data: Mapping[str, Any] | FineTuneRequest) -> FineTuneRequest:
        """A validated request; a problem raises :class:`~tunery.errors.InvalidInput` naming its path."""
        return data if isinstance(data, FineTuneRequest) else parse_model(cls, data)

    def to_json(self) -> dict[str, Any]:
        """The stored form: what was given, in the one canonical place for each setting."""
        return self.model_dump(mode="json", exclude_none=True)

    def training_config(self, n_examples: int, defaults: TrainingDefaults, *, tools: bool = False
                        ) -> tuple[TrainingConfig, ResolvedHyperparameters]:
        """The trainer's configuration for ``n_examples`` training examples (pairs, for DPO), with the model's
        catalog ``defaults``: ``auto`` resolved, the learning rate from the method's base rate; ``tools``:
        the examples define tools (their LoRA layers default to the catalog's ``tool_lora_layers``)."""
        if self.seed is None:
            raise ValueError("the request's seed is chosen when its job is created")
        hp = self.method.hyperparameters.resolve(n_examples)
        method = self.training_method
        base_lr = defaults.lora_learning_rate if method == "lora" else defaults.full_learning_rate
        if self.method.type == "dpo":
            base_lr *= DPO_LEARNING_RATE_SCALE
        steps = math.ceil(n_examples / hp.batch_size) * hp.n_epochs
        every = int(os.environ.get("TUNERY_CHECKPOINT_EVERY", 0)) or max(5, steps // 8 if method == "lora" else steps // 2)
        cfg = TrainingConfig(
            method=method, n_epochs=hp.n_epochs, batch_size=hp.batch_size,
            learning_rate=base_lr * hp.learning_rate_multiplier, seed=self.seed,
            max_seq_length=defaults.max_seq_length, lora=LoraSettings.from_defaults(defaults, self.lora, tools=tools),
            checkpoint_every=every, eval_every=max(1, min(10, steps // 10)), objective=self.method.type,
            precision=self.precision, sharding=self.sharding,
            **({"beta": hp.beta} if hp.beta is not None else {}),
        )
        return cfg, hp
