"""One supervised fine-tune from start to finish: what happens to the model. A recipe in
torchtune's and litgpt's sense, a function that reads top to bottom: the tokenizer and the data
encoded with it, the model made trainable (LoRA or full), training with callbacks, and the saved
result.

The job layer (``tunery.jobs.runner``) says what happens to the job around it: its status and
events, cancelling, and registering the fine-tuned model. It talks to the recipe only through
the resolved :class:`~tunery.training.config.TrainingConfig` and the :class:`Callbacks`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tunery.chat_template import Messages, encode_all
from tunery.training.config import TrainingConfig
from tunery.training.model import default_device, prepare_model
from tunery.training.trainer import Callbacks, Trainer, TrainResult

if TYPE_CHECKING:
    from tunery.models import ModelRecord


def finetune(base: ModelRecord, config: TrainingConfig, train: Sequence[Messages], valid: Sequence[Messages],
             output_dir: Path, callbacks: Callbacks | None = None, *, resume: bool = True) -> TrainResult:
    """Fine-tune the base model ``base`` on the conversations ``train`` (``valid`` held out),
    writing checkpoints, the final model and the results CSV under ``output_dir``. With
    ``resume``, a run that stopped goes on from its last checkpoint, exactly as if it had not."""
    from tunery.models.loading import base_path, load_tokenizer

    cb = callbacks or Callbacks()

    # 1. The tokenizer, and the conversations encoded with it: token ids, and labels only where
    #    the model learns (assistant messages of weight 1 and the end-of-turn marker after each).
    tokenizer = load_tokenizer(base)
    train_ex = encode_all(train, tokenizer, max_length=config.max_seq_length)
    valid_ex = encode_all(valid, tokenizer, max_length=config.max_seq_length)
    truncated = sum(e.truncated for e in train_ex)
    if truncated:
        cb.on_message("warn", f"{truncated} training example(s) longer than {config.max_seq_length} tokens were "
                              "truncated")

    # 2. The trainer over that data: batch order, learning-rate schedule, checkpoints. It refuses
    #    data with nothing to learn before any weights are loaded.
    trainer = Trainer(base_path=base_path(base), tokenizer=tokenizer, config=config, train=train_ex,
                      valid=valid_ex, output_dir=output_dir, callbacks=cb)

    # 3. The model: the base weights with LoRA adapters on the chosen layers, or every weight
    #    trainable (full fine-tuning).
    model = prepare_model(base_path(base), config, default_device())

    # 4. Train, from the last checkpoint when there is one, reporting through the callbacks;
    #    then save the final model (the adapter alone for LoRA) and the results CSV.
    return trainer.run(model=model, resume=resume)
