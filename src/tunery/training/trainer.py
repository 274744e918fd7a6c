"""The supervised fine-tuning loop: LoRA or full, loss only on trained assistant tokens, exact
resume from checkpoints, metrics with the OpenAI names. DPO (``training.dpo``) runs in the same loop,
overriding what a training unit is, one step, validation, and the work done before the first step.

Where the speed comes from (see benchmarks/train_throughput.py):
* the output projection and the loss run only at positions that carry a label, not over the
  whole vocabulary at every position of every sequence;
* micro-batches group similar lengths (see ``batching``), so little compute goes to padding, and
  unpadded micro-batches take the causal attention fast path with no mask at all;
* nothing is computed twice: no second forward for accuracy, no logits kept for the whole batch;
* with LoRA on the upper layers only (the catalog default for SmolLM2), the frozen layers below run
  once per example, the common system message once for all (``training.frozen``), and each step
  runs the adapted layers on the examples packed into one row, with no padding.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunery.chat_template import IGNORE, EncodedExample
from tunery.home import atomic_write_text
from tunery.runtime import cpu_threads, default_device
from tunery.training import checkpoint, distributed, precision
from tunery.training.batching import collate, epoch_batches, micro_batches
from tunery.training.config import TrainingConfig
from tunery.training.frozen import FrozenLayers, packed_forward
from tunery.training.model import autocast_context, decoder_and_head, prepare_model

METRIC_COLUMNS = ["step", "train_loss", "train_mean_token_accuracy", "valid_loss", "valid_mean_token_accuracy",
                  "full_valid_loss", "full_valid_mean_token_accuracy"]


class Cancelled(Exception):
    """Raised inside the loop when the job was cancelled."""


@dataclass
class Callbacks:
    """How the trainer reports. Every hook is optional."""

    on_message: Callable[[str, str], None] = lambda level, message: None
    on_metrics: Callable[[dict[str, Any]], None] = lambda row: None
    on_checkpoint: Callable[[int, Path, dict[str, Any]], None] = lambda step, path, metrics: None
    on_progress: Callable[[dict[str, Any]], None] = lambda info: None
    should_stop: Callable[[], bool] = lambda: False
    keep_on_stop: Callable[[], bool] = lambda: False
    """Asked once ``should_stop`` said stop: whether to write a checkpoint at the step reached
    first, so that the run goes on from exactly there (a paused job); else it goes on from the
    last checkpoint written on the way, or from the start."""
    on_start: Callable[[dict[str, Any]], None] = lambda info: None
    """Once, before the first step: ``examples``, ``total_steps`` and ``resumed_from`` (the step of
    the checkpoint the run goes on from, or None for a fresh start)."""


@dataclass
class TrainResult:
    output_dir: Path
    steps: int
    trained_tokens: int
    metrics: list[dict[str, Any]]
    seconds: float
    tokens_per_second: float
    resumed_from: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def labelled_logits(model, batch, *, autocast_dtype=None, frozen: FrozenLayers | None = None,
                    examples: list[EncodedExample] | None = None) -> tuple[Any, Any]:
    """The logits at labelled positions (float32) and their target ids, example after example in
    the batch's order.

    With ``frozen`` (and the batch's ``examples``), the frozen lower layers are not run: their
    kept output for each example feeds the trained layers directly (see ``training.frozen``)."""
    return distributed.as_forward(model, _labelled_logits, model, batch, autocast_dtype, frozen, examples)


def _labelled_logits(model, batch, autocast_dtype, frozen, examples) -> tuple[Any, Any]:
    decoder, head = decoder_and_head(model)
    with autocast_context(batch.input_ids.device.type, autocast_dtype):
        if frozen is not None and examples is not None:
            h, targets = packed_forward(frozen, examples, batch.prefix_len)
        else:
            if batch.prefix_len:
                hidden = _forward_shared_prefix(decoder, batch)
                all_targets = batch.targets[:, batch.prefix_len:]
            else:
                hidden = decoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
                all_targets = batch.targets
            sel = all_targets != IGNORE
            h, targets = hidden[:, :-1][sel], all_targets[sel]
        logits = head(h).float()
    return logits, targets


def batch_loss(model, batch, *, autocast_dtype=None, frozen: FrozenLayers | None = None,
               examples: list[EncodedExample] | None = None) -> tuple[Any, int, int]:
    """Sum of token losses over labelled positions, their count, and how many were predicted right."""
    import torch.nn.functional as F

    logits, targets = labelled_logits(model, batch, autocast_dtype=autocast_dtype, frozen=frozen, examples=examples)
    if targets.numel() == 0:
        return logits.sum() * 0.0, 0, 0
    loss = F.cross_entropy(logits, targets, reduction="sum")
    correct = int((logits.argmax(-1) == targets).sum())
    return loss, int(targets.numel()), correct


def _forward_shared_prefix(decoder, batch):
    """Run the shared prefix once (batch of one), expand its key/value cache to every row, then
    run the rest. Gradients flow back through the expanded cache into the prefix, so the loss
    and its gradient are the ones the plain forward gives, for less compute."""
    import torch
    from transformers import DynamicCache

    p, rows, width = batch.prefix_len, batch.input_ids.shape[0], batch.input_ids.shape[1]
    pre = decoder(input_ids=batch.input_ids[:1, :p], use_cache=True).cache
    cache = DynamicCache(config=decoder.config)
    for i, layer in enumerate(pre.layers):
        cache.update(layer.keys.expand(rows, -1, -1, -1), layer.values.expand(rows, -1, -1, -1), i)
    positions = torch.arange(p, width, device=batch.input_ids.device)[None].expand(rows, -1)
    return decoder(input_ids=batch.input_ids[:, p:], cache=cache, attention_mask=batch.attention_mask,
                   position_ids=positions, use_cache=True).last_hidden_state


class Trainer:
    def __init__(self, *, base_path: Path, tokenizer, config: TrainingConfig, train: list[EncodedExample],
                 valid: list[EncodedExample] | None, output_dir: Path, callbacks: Callbacks | None = None) -> None:
        self.base_path = Path(base_path)
        self.tokenizer = tokenizer
        self.config = config
        self.n_examples = len(train)
        self.train = self._usable(train)
        self.valid = self._usable(valid or [])
        self.output_dir = Path(output_dir)
        self.cb = callbacks or Callbacks()
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.frozen: FrozenLayers | None = None
        self.sharded = False  # FSDP (``training.distributed``): every rank then runs in lockstep
        self._padding = EncodedExample([self.pad_id] * 2, [IGNORE] * 2)  # a pass with nothing to learn
        if not self.train:
            from tunery.errors import InvalidInput

            raise InvalidInput("no training example has an assistant token to learn from", param="training_file")

    metric_columns = METRIC_COLUMNS

    @staticmethod
    def _usable(items: list) -> list:
        """The training units with something to learn from (a unit here is one example)."""
        return [e for e in items if e.n_trained > 0]

    @staticmethod
    def _examples(items: list) -> list[EncodedExample]:
        """The token sequences of training units, for the frozen-layer cache."""
        return items

    def _prepare(self, model, device: str, autocast, state: dict[str, Any] | None) -> dict[str, Any]:
        """Work done once before the first step, given the resumed checkpoint's state (or None);
        returns what a checkpoint must keep of it. Supervised training has none."""
        return {}

    @property
    def checkpoint_dir(self) -> Path:
        return self.output_dir / "checkpoints"

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train) / self.config.batch_size)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.config.n_epochs

    def _lr_lambda(self, step: int) -> float:
        warmup = max(1, int(self.total_steps * self.config.warmup_ratio))
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (self.total_steps - step) / max(1, self.total_steps - warmup))

    def _precision(self, model, device: str) -> precision.Choice:
        """The precision to train in (``training.precision``): where ``auto`` picks bf16, the
        model's loss on a few held-out examples (training ones without a validation file) must
        agree with fp32's, else fp32. Under torchrun rank 0 measures and decides, every rank follows
        (ranks that chose apart would train differently, or make different collective calls and
        hang); the held-out loss is then taken by all ranks together, so they agree on it too."""
        import torch

        requested = self.config.precision
        if requested == "auto":  # TUNERY_TRAIN_PRECISION: this machine's default instead of measuring
            requested = os.environ.get("TUNERY_TRAIN_PRECISION") or "auto"
        choice = precision.choose(requested, device) if distributed.is_main() else None
        choice, requested = distributed.from_main((choice, requested))
        if choice.precision != "bf16" or requested != "auto":
            return choice
        probe = (self.valid or self.train)[:4]
        fp32, _ = self._evaluate(model, self._examples(probe), device, None)
        bf16, _ = self._evaluate(model, self._examples(probe), device, torch.bfloat16)
        model.train()
        if precision.loss_agrees(fp32, bf16):
            return choice
        return precision.Choice("fp32", f"fp32: bf16 would be faster here, but it moved the held-out loss by "
                                        f"{(bf16 - fp32) / fp32:+.2%} (more than {precision.LOSS_TOLERANCE:.0%})")

    def _validation(self, model, items: list, device: str, autocast, *, prefix: str) -> dict[str, float]:
        """Validation metrics on ``items``, named with ``prefix`` (``valid_`` or ``full_valid_``)."""
        loss, acc = self._evaluate(model, items, device, autocast)
        return {f"{prefix}loss": loss, f"{prefix}mean_token_accuracy": acc}

    def _evaluate(self, model, examples: list[EncodedExample], device: str, autocast) -> tuple[float, float]:
        import torch

        total = n = correct = 0.0
        model.eval()
        with torch.no_grad():
            idx = distributed.shard(list(range(len(examples))))
            for part in self._passes(idx, examples):
                loss, cnt, ok = batch_loss(model, self._collate(part, device), autocast_dtype=autocast,
                                           frozen=self.frozen, examples=part)
                total += float(loss)
                n += cnt
                correct += ok
        total, n, correct = distributed.sum_all(total, n, correct)
        model.train()
        return (total / n, correct / n) if n else (float("nan"), float("nan"))

    def _passes(self, indices: list[int], examples: list[EncodedExample]) -> list[list[EncodedExample]]:
        """The micro-batches of ``examples[indices]``. Sharded, every rank runs as many passes as
        the busiest one (each pass gathers weights with every rank): the others' extra passes run
        on a padding example that carries no label."""
        parts = [[examples[i] for i in mb] for mb in micro_batches(indices, examples, self.config.micro_batch_tokens)]
        if self.sharded:
            parts += [[self._padding]] * (distributed.most(len(parts)) - len(parts))
        return parts

    def _collate(self, part: list[EncodedExample], device: str):
        # sharded, no shared-prefix pass: it runs the decoder twice on some ranks and once on
        # others, and every rank must gather each layer's weights as often as the rest
        return collate(part, self.pad_id, device, share_prefix=not self.sharded)

    def run(self, *, resume: bool = True, model=None) -> TrainResult:
        """Train, resuming from the last checkpoint when ``resume``; saves checkpoints on the way,
        then the final model and the results CSV. ``model`` is the base prepared for training (see
        ``training.model.prepare_model``); it is prepared here when not given."""
        import torch

        cfg = self.config
        device = distributed.setup(default_device())
        torch.set_num_threads(distributed.threads(cpu_threads()))
        if not distributed.is_main():
            self.cb = Callbacks()  # rank 0 alone reports (see ``training.distributed``)
        if model is None:
            model = prepare_model(self.base_path, cfg, device)
        self.frozen, self.sharded = None, False
        sharding, why = distributed.choose_sharding(
            cfg.sharding, method=cfg.method, objective=cfg.objective, device=device,
            n_params=sum(p.numel() for p in model.parameters() if p.requires_grad))
        if distributed.active() or cfg.sharding == "fsdp":  # one process asked for fsdp: say it is moot
            self.cb.on_message("info", f"Sharding: {why}")
        self.precision = self._precision(model, device)
        self.cb.on_message("info", f"Training in {self.precision.reason}")
        autocast = torch.bfloat16 if self.precision.precision == "bf16" else None
        self.frozen = (FrozenLayers.for_model(model, autocast_dtype=autocast)
                       if cfg.method == "lora" and cfg.cache_frozen_layers else None)
        if self.frozen is not None:
            self.frozen.share_prefix(self._examples(self.train))
            self.frozen.share_prefix(self._examples(self.valid))
        params = [p for p in model.parameters() if p.requires_grad]
        distributed.sync_params(params)
        step, start_epoch, start_batch, rows, trained_tokens = 0, 0, 0, [], 0
        resumed_from, state = None, None
        ckpt = checkpoint.latest(self.checkpoint_dir) if resume else None
        if ckpt is not None:  # the full weights, before they are cut into shards (see ``_load_weights``)
            state = checkpoint.load_state(ckpt)  # memory-mapped: a rank reads the parts it keeps
            self._load_weights(model, ckpt)
        if sharding == "fsdp":
            distributed.shard_model(model, device)
            self.sharded = True
            params = [p for p in model.parameters() if p.requires_grad]  # now this rank's shards
        opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, foreach=True)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, self._lr_lambda)
        if ckpt is not None:
            opt.load_state_dict(distributed.shard_state(state["optimizer"], params))
            sched.load_state_dict(state["scheduler"])
            checkpoint.restore_rng(state)
            step, start_epoch, start_batch = state["step"], state["epoch"], state["batch"]
            rows, trained_tokens = state["metrics"], state["trained_tokens"]
            resumed_from = step
            self.cb.on_message("info", f"Resumed from checkpoint at step {step}")
        else:
            torch.manual_seed(cfg.seed)
        kept = self._prepare(model, device, autocast, state)
        self.cb.on_start({"examples": self.n_examples, "total_steps": self.total_steps, "resumed_from": resumed_from})

        self.output_dir.mkdir(parents=True, exist_ok=True)
        t0, tokens_seen = time.perf_counter(), 0
        saved = resumed_from  # the step of the last checkpoint, which a stop need not write again
        for epoch in range(start_epoch, cfg.n_epochs):
            batches = epoch_batches(len(self.train), cfg.batch_size, seed=cfg.seed, epoch=epoch)
            first = start_batch if epoch == start_epoch else 0
            if first == 0:
                self.cb.on_message("info", f"Epoch {epoch + 1}/{cfg.n_epochs} started")
            for b in range(first, len(batches)):
                if distributed.any_rank(self.cb.should_stop()):
                    if step not in (0, saved) and distributed.any_rank(self.cb.keep_on_stop()):
                        self._checkpoint(model, opt, sched, rows, kept, step, trained_tokens, epoch, b,
                                         resume_only=True)
                    distributed.finish()  # every rank stops here, together: a clean end
                    raise Cancelled()
                row = self._train_step(model, opt, sched, params, batches[b], device, autocast)
                step += 1
                trained_tokens += row.pop("_trained")
                tokens_seen += row.pop("_tokens")
                row["step"] = step
                if self.valid and (step % cfg.eval_every == 0 or step == self.total_steps):
                    vb = [self.valid[(step // cfg.eval_every * cfg.batch_size + k) % len(self.valid)]
                          for k in range(min(cfg.batch_size, len(self.valid)))]
                    row.update(self._validation(model, vb, device, autocast, prefix="valid_"))
                epoch_end = b == len(batches) - 1
                if epoch_end and self.valid:
                    row.update(self._validation(model, self.valid, device, autocast, prefix="full_valid_"))
                rows.append(row)
                elapsed = time.perf_counter() - t0
                self.cb.on_progress({"step": step, "total_steps": self.total_steps, "epoch": epoch + 1,
                                     "tokens_per_second": tokens_seen / elapsed if elapsed else 0.0,
                                     "elapsed": elapsed, "train_loss": row["train_loss"]})
                self.cb.on_metrics(dict(row))
                every = cfg.checkpoint_every and step % cfg.checkpoint_every == 0
                if (epoch_end and cfg.epoch_checkpoints) or every:
                    self._checkpoint(model, opt, sched, rows, kept, step, trained_tokens,
                                     *((epoch + 1, 0) if epoch_end else (epoch, b + 1)))
                    saved = step

        final = self.output_dir / "final"
        from tunery.home import atomic_dir

        model.eval()
        self.model = model
        weights, _ = self._whole_state(model)
        if distributed.is_main():
            with atomic_dir(final) as tmp:
                checkpoint.save_model(model, tmp, tokenizer=self.tokenizer, weights=weights)
            self.write_results(rows)
        distributed.finish()
        seconds = time.perf_counter() - t0
        return TrainResult(output_dir=final, steps=step, trained_tokens=trained_tokens, metrics=rows,
                           seconds=seconds, tokens_per_second=tokens_seen / seconds if seconds else 0.0,
                           resumed_from=resumed_from)

    def _train_step(self, model, opt, sched, params, indices, device, autocast) -> dict[str, Any]:
        n_label = sum(self.train[i].n_trained for i in indices)  # the whole batch's, on every rank
        examples = [self.train[i] for i in distributed.shard(indices)]
        total_loss, correct, tokens = 0.0, 0, 0
        for part in self._passes(list(range(len(examples))), examples):
            batch = self._collate(part, device)
            loss, _, ok = batch_loss(model, batch, autocast_dtype=autocast, frozen=self.frozen, examples=part)
            (loss / n_label).backward()
            total_loss += float(loss.detach())
            correct += ok
            tokens += batch.n_tokens if part[0] is not self._padding else 0
        if not self.sharded:  # FSDP reduced them already, each rank its shard
            distributed.all_reduce_grads(params)
        total_loss, correct, tokens = distributed.sum_all(total_loss, correct, tokens)
        grad_norm = distributed.clip_grad_norm(params, self.config.max_grad_norm)  # before clipping
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        return {"train_loss": total_loss / n_label, "train_mean_token_accuracy": correct / n_label,
                "grad_norm": grad_norm, "_trained": n_label, "_tokens": tokens}

    def _checkpoint(self, model, opt, sched, rows: list[dict[str, Any]], kept: dict[str, Any], step: int,
                    trained_tokens: int, epoch: int, batch: int, resume_only: bool = False) -> None:
        """Write the checkpoint of ``step``, from which a resumed run starts at batch ``batch`` of
        epoch ``epoch``, and report it (``resume_only``: a pause's, replaced by the next one, see
        ``checkpoint.save``). Called on every rank: sharded weights are gathered first."""
        weights, opt_state = self._whole_state(model, opt)
        if not distributed.is_main():
            return
        cfg = self.config
        state = {"optimizer": opt_state, "scheduler": sched.state_dict(), "step": step, "epoch": epoch,
                 "batch": batch, "metrics": rows, "trained_tokens": trained_tokens, "config": cfg.to_dict(), **kept}
        row = rows[-1] if rows else {"step": step}
        path = checkpoint.save(self.checkpoint_dir, step, model=model, tokenizer=self.tokenizer, state=state,
                               metrics=row, keep=cfg.keep_checkpoints, weights=weights, resume_only=resume_only)
        self.write_results(rows)
        self.cb.on_checkpoint(step, path, row)

    def _whole_state(self, model, opt=None) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The model's weights (None: the model saves its own) and the optimizer's state, whole as
        one process holds them. Sharded, they are gathered from every rank (all must call this)
        onto rank 0, so a checkpoint has the same form whatever wrote it."""
        if not self.sharded:
            return None, opt.state_dict() if opt is not None else None
        return (distributed.full_state(model.state_dict(keep_vars=True)),
                distributed.full_state(opt.state_dict()) if opt is not None else None)

    def _load_weights(self, model, ckpt: Path) -> None:
        """The checkpoint's weights into ``model``. Full weights are read one tensor at a time into
        the model's own, so a rank never holds a second whole copy of the model."""
        import torch
        from safetensors import safe_open
        from safetensors.torch import load_file

        if self.config.method == "lora":
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(model, load_file(ckpt / "adapter_model.safetensors"))
            return
        files = [safe_open(f, framework="pt") for f in sorted(ckpt.glob("*.safetensors"))]
        where = {name: f for f in files for name in f.keys()}  # noqa: SIM118 (a safetensors file, not a dict)
        _check_full_state(model, {n: tuple(f.get_slice(n).get_shape()) for n, f in where.items()}, ckpt)
        own = model.state_dict(keep_vars=True)  # strict, bar the tied copies checked above
        with torch.no_grad():
            for name, f in where.items():
                own[name].copy_(f.get_tensor(name))

    def write_results(self, rows: list[dict[str, Any]]) -> Path:
        """The results CSV, with the OpenAI column names."""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.metric_columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()})
        path = self.output_dir / "results.csv"
        atomic_write_text(path, buf.getvalue())
        return path


def _check_full_state(model, shapes: dict[str, tuple[int, ...]], ckpt: Path) -> None:
    """Refuse a checkpoint whose weights do not match the model, by name and shape: resuming must
    never go on silently with some weights left as they were. A weight the checkpoint leaves out is
    fine only when it is tied to one it holds (``save_pretrained`` writes a tied LM head once)."""
    from tunery.errors import TuneryError

    own = model.state_dict(keep_vars=True)
    ptrs: dict[int, set[str]] = {}
    for name, t in own.items():
        ptrs.setdefault(t.data_ptr(), set()).add(name)
    missing = [n for n in own if n not in shapes and not ptrs[own[n].data_ptr()] & shapes.keys()]
    unexpected = [n for n in shapes if n not in own]
    wrong = [f"{n} {tuple(shapes[n])} vs {tuple(own[n].shape)}" for n in shapes
             if n in own and tuple(shapes[n]) != tuple(own[n].shape)]
    if missing or unexpected or wrong:
        parts = [f"{label}: {', '.join(names[:5])}" + (f" (and {len(names) - 5} more)" if len(names) > 5 else "")
                 for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
                 if names]
        raise TuneryError(f"checkpoint {ckpt} does not match the model ({'; '.join(parts)})",
                          code="checkpoint_mismatch", hint="it was written for another model; start the job again")
