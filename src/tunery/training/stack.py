"""Stacking two LoRA adapters into one lives in :mod:`tunery.models.stack`, below training, since
serving and export need it too (a checkpoint of a job from a LoRA fine-tune runs stacked on its
parent); named here for the training recipe, which saves such a job's final model stacked."""

from tunery.models.stack import ADAPTER_FILES, stack

__all__ = ["ADAPTER_FILES", "stack"]
