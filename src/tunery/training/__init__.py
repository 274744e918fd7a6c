"""Fine-tuning, supervised and by preference (DPO): the settings, the recipes (``finetune``,
``finetune_dpo``), the trainer loop, batching, checkpoints."""

from tunery.chat_template import IGNORE, EncodedExample, encode, encode_all
from tunery.training.config import (
    Hyperparameters,
    LoraSettings,
    LoraSpec,
    ResolvedHyperparameters,
    TrainingConfig,
)
from tunery.training.recipe import finetune, finetune_dpo
from tunery.training.trainer import METRIC_COLUMNS, Callbacks, Cancelled, Trainer, TrainResult

__all__ = ["IGNORE", "METRIC_COLUMNS", "Callbacks", "Cancelled", "EncodedExample", "Hyperparameters",
           "LoraSettings", "LoraSpec", "ResolvedHyperparameters", "TrainResult", "Trainer", "TrainingConfig",
           "encode", "encode_all", "finetune", "finetune_dpo"]
