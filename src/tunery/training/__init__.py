"""Supervised fine-tuning: encoding with loss masks, batching, the trainer loop, checkpoints."""

from tunery.training.config import Hyperparameters, LoraSettings, ResolvedHyperparameters, TrainingConfig
from tunery.training.encoding import IGNORE, EncodedExample, encode, encode_all
from tunery.training.trainer import METRIC_COLUMNS, Callbacks, Cancelled, Trainer, TrainResult

__all__ = ["IGNORE", "METRIC_COLUMNS", "Callbacks", "Cancelled", "EncodedExample", "Hyperparameters",
           "LoraSettings", "ResolvedHyperparameters", "TrainResult", "Trainer", "TrainingConfig", "encode",
           "encode_all"]
