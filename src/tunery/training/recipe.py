"""One fine-tune from start to finish, supervised (:func:`finetune`) or by preference
(:func:`finetune_dpo`): what happens to the model. A recipe in torchtune's and litgpt's sense, a
function that reads top to bottom: the tokenizer and the data encoded with it, the model made
trainable (LoRA or full), training with callbacks, and the saved result.

Either may start from a fine-tuned model (``ft:...``, as OpenAI recommends supervised first, then
DPO from it): a full fine-tune is simply other base weights; a LoRA fine-tune's adapter is merged
into its base's weights before the new adapter goes on, and the result is saved as one adapter
on the base that does both (``models.stack``).

The job layer (``tunery.jobs.runner``) says what happens to the job around it: its status and
events, cancelling, and registering the fine-tuned model. It talks to the recipe only through
the resolved :class:`~tunery.training.config.TrainingConfig` and the :class:`Callbacks`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tunery.chat_template import Messages, encode_all
from tunery.runtime import default_device
from tunery.training import distributed
from tunery.training.config import TrainingConfig
from tunery.training.model import prepare_model
from tunery.training.trainer import Callbacks, Trainer, TrainResult

if TYPE_CHECKING:
    from tunery.data.preference import PreferencePair
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

    # 3. The model: the base weights (a LoRA fine-tune's merged in) with LoRA adapters on the
    #    chosen layers, or every weight trainable (full fine-tuning).
    model = prepare_model(base_path(base), config, distributed.setup(default_device()),
                          start_adapter=_start_adapter(base))

    # 4. Train, from the last checkpoint when there is one, reporting through the callbacks;
    #    then save the final model (the adapter alone for LoRA) and the results CSV.
    return _stacked(base, config, trainer.run(model=model, resume=resume), output_dir)


def finetune_dpo(base: ModelRecord, config: TrainingConfig, train: Sequence[PreferencePair],
                 valid: Sequence[PreferencePair], output_dir: Path, callbacks: Callbacks | None = None, *,
                 resume: bool = True) -> TrainResult:
    """Train ``base`` to prefer each pair's chosen answer over its rejected one (DPO, with
    ``config.beta``), the reference being ``base`` itself; otherwise as :func:`finetune`."""
    from tunery.data.preference import encode_pairs
    from tunery.models.loading import base_path, load_tokenizer
    from tunery.training.dpo import DPOTrainer

    cb = callbacks or Callbacks()

    # 1. Each pair as two token sequences, prompt + chosen and prompt + rejected, the loss on the
    #    answers only.
    tokenizer = load_tokenizer(base)
    train_pairs = encode_pairs(train, tokenizer, max_length=config.max_seq_length)
    valid_pairs = encode_pairs(valid, tokenizer, max_length=config.max_seq_length)
    truncated = sum(c.truncated or r.truncated for c, r in train_pairs)
    if truncated:
        cb.on_message("warn", f"{truncated} training pair(s) longer than {config.max_seq_length} tokens were "
                              "truncated")

    # 2. The trainer, 3. the model (where it starts is also the reference), 4. train and save.
    trainer = DPOTrainer(base_path=base_path(base), tokenizer=tokenizer, config=config, train=train_pairs,
                         valid=valid_pairs, output_dir=output_dir, callbacks=cb, beta=config.beta)
    model = prepare_model(base_path(base), config, distributed.setup(default_device()),
                          start_adapter=_start_adapter(base))
    return _stacked(base, config, trainer.run(model=model, resume=resume), output_dir)


def _start_adapter(base: ModelRecord) -> Path | None:
    """The adapter of a LoRA fine-tune that training starts from, to merge into its base."""
    return base.path if base.is_adapter else None


def _stacked(base: ModelRecord, config: TrainingConfig, result: TrainResult, output_dir: Path) -> TrainResult:
    """The result as one adapter on the root base when LoRA training started from a LoRA
    fine-tune: the starting adapter and the new one stacked (exact; see ``models.stack``)."""
    import shutil
    from dataclasses import replace

    from tunery.home import atomic_dir
    from tunery.models.stack import ADAPTER_FILES, stack

    if not base.is_adapter or config.method != "lora" or not distributed.is_main():
        return result  # ranks > 0 of a torchrun job leave the writing to rank 0
    out = output_dir / "stacked"
    with atomic_dir(out) as tmp:
        stack(base.path, result.output_dir, tmp)
        for item in result.output_dir.iterdir():  # the tokenizer's files
            if item.is_file() and item.name not in ADAPTER_FILES:
                shutil.copy2(item, tmp / item.name)
    return replace(result, output_dir=out)
