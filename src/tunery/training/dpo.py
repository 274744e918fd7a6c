"""Direct preference optimisation (DPO, Rafailov et al. 2023) in the supervised trainer's loop:
the same seeds, batch order, checkpoints, resume, cancel and validation, on pairs of answers.

The loss is the sigmoid one of the paper and of TRL's default: for a pair with policy
log-probabilities ``pi_c``, ``pi_r`` of the chosen and rejected answers and the reference
model's ``ref_c``, ``ref_r``,

    loss = -logsigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))

and the rewards reported (TRL's names) are ``beta * (pi - ref)``. The reference model is the
starting weights: with LoRA, the same model with its adapters switched off (no second copy); when
fine-tuning from a LoRA fine-tune, the starting adapter is merged into the weights first, so the
reference is the fine-tune. Its log-probabilities never change, so they are computed once per
pair before the first step (one pair at a time, so the values never depend on the batching) and
kept in the checkpoints: a step runs the policy only.

Where the speed comes from, besides that: chosen and rejected share their prompt, and the pairs of
a micro-batch share the system message; the frozen-layer cache and the packed forward of the
supervised trainer (``training.frozen``) run that shared prefix once for all of them.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from tunery.chat_template import EncodedExample
from tunery.training.batching import collate, cut_by_length
from tunery.training.config import DEFAULT_BETA
from tunery.training.trainer import Trainer, labelled_logits

DPO_METRIC_COLUMNS = ["step", "train_loss", "rewards/chosen", "rewards/rejected", "rewards/margins",
                      "rewards/accuracies", "valid_loss", "valid_rewards/accuracies", "valid_rewards/margins",
                      "full_valid_loss", "full_valid_rewards/accuracies", "full_valid_rewards/margins"]
"""The results CSV: the loss under OpenAI's name, the rewards under TRL's."""

Pair = tuple[EncodedExample, EncodedExample]


def dpo_loss(pi_chosen, pi_rejected, ref_chosen, ref_rejected, beta: float):
    """Per-pair sigmoid DPO losses, and the chosen and rejected rewards (detached)."""
    import torch.nn.functional as F

    chosen = pi_chosen - ref_chosen
    rejected = pi_rejected - ref_rejected
    losses = -F.logsigmoid(beta * (chosen - rejected))
    return losses, beta * chosen.detach(), beta * rejected.detach()


def sequence_logps(model, examples: list[EncodedExample], pad_id: int, device: str, *, autocast=None,
                   frozen=None):
    """Sum of the log-probabilities of each example's labelled tokens (its answer), one value per
    example, in order."""
    import torch
    import torch.nn.functional as F

    batch = collate(examples, pad_id, device)
    logits, targets = labelled_logits(model, batch, autocast_dtype=autocast, frozen=frozen, examples=examples)
    token = -F.cross_entropy(logits, targets, reduction="none")
    counts = torch.tensor([e.n_trained for e in examples], device=token.device)
    owner = torch.repeat_interleave(torch.arange(len(examples), device=token.device), counts)
    return torch.zeros(len(examples), device=token.device, dtype=token.dtype).index_add(0, owner, token)


def pair_micro_batches(indices: list[int], pairs: list[Pair], max_tokens: int) -> list[list[int]]:
    """Pairs cut into micro-batches of about ``max_tokens`` tokens, similar lengths together; a
    pair is never split, since its loss needs both answers."""
    return cut_by_length(indices, lambda i: max(len(pairs[i][0]), len(pairs[i][1])), max_tokens, rows=2)


class DPOTrainer(Trainer):
    """The supervised :class:`Trainer`'s loop over preference pairs; ``train`` and ``valid`` are
    (chosen, rejected) token sequences, as ``data.preference.encode_pairs`` gives them."""

    metric_columns = DPO_METRIC_COLUMNS

    def __init__(self, *, beta: float = DEFAULT_BETA, **kw: Any) -> None:
        self.beta = beta
        self.ref: dict[str, Any] = {}
        super().__init__(**kw)

    @staticmethod
    def _usable(items: list) -> list:
        """Pairs whose two answers both kept a token after truncation."""
        return [p for p in items if p[0].n_trained > 0 and p[1].n_trained > 0]

    @staticmethod
    def _examples(items: list) -> list[EncodedExample]:
        return [e for p in items for e in p]

    def _prepare(self, model, device: str, autocast, state: dict[str, Any] | None) -> dict[str, Any]:
        """The reference log-probabilities of every pair: from the checkpoint when resuming (the
        weights have moved since), else computed now from the starting weights."""
        import torch

        if state is not None and "reference_logps" in state:
            self.ref = state["reference_logps"]
            return {"reference_logps": self.ref}
        model.eval()
        with torch.no_grad(), model.disable_adapter() if hasattr(model, "disable_adapter") else nullcontext():
            self.ref = {name: torch.stack([sequence_logps(model, list(p), self.pad_id, device, autocast=autocast,
                                                          frozen=self.frozen) for p in items]).cpu()
                        if items else torch.zeros(0, 2) for name, items in (("train", self.train),
                                                                             ("valid", self.valid))}
        model.train()
        return {"reference_logps": self.ref}

    def _pair_terms(self, model, items: list[Pair], idx: list[int], split: str, device: str, autocast):
        """Losses and rewards of the pairs ``idx`` of ``items`` (whose reference values are under
        ``split``), with gradients to the policy."""
        examples = [e for i in idx for e in items[i]]
        logps = sequence_logps(model, examples, self.pad_id, device, autocast=autocast, frozen=self.frozen)
        ref = self.ref[split][idx].to(logps.device)
        return dpo_loss(logps[0::2], logps[1::2], ref[:, 0], ref[:, 1], self.beta)

    def _train_step(self, model, opt, sched, params, indices, device, autocast) -> dict[str, Any]:
        import torch

        n = len(indices)
        loss_sum, chosen, rejected, right, tokens, trained = 0.0, 0.0, 0.0, 0, 0, 0
        for mb in pair_micro_batches(list(indices), self.train, self.config.micro_batch_tokens):
            losses, r_c, r_r = self._pair_terms(model, self.train, mb, "train", device, autocast)
            (losses.sum() / n).backward()
            loss_sum += float(losses.detach().sum())
            chosen += float(r_c.sum())
            rejected += float(r_r.sum())
            right += int((r_c > r_r).sum())
            tokens += sum(len(e) for i in mb for e in self.train[i])
            trained += sum(e.n_trained for i in mb for e in self.train[i])
        if self.config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        return {"train_loss": loss_sum / n, "rewards/chosen": chosen / n, "rewards/rejected": rejected / n,
                "rewards/margins": (chosen - rejected) / n, "rewards/accuracies": right / n,
                "_trained": trained, "_tokens": tokens}

    def _validation(self, model, items: list, device: str, autocast, *, prefix: str) -> dict[str, float]:
        """Loss, reward accuracy (chosen's reward above rejected's) and margin on held-out pairs."""
        import torch

        positions = {id(p): i for i, p in enumerate(self.valid)}
        idx = [positions[id(p)] for p in items]
        loss = margin = right = 0.0
        model.eval()
        with torch.no_grad():
            for mb in pair_micro_batches(idx, self.valid, self.config.micro_batch_tokens):
                losses, r_c, r_r = self._pair_terms(model, self.valid, mb, "valid", device, autocast)
                loss += float(losses.sum())
                margin += float((r_c - r_r).sum())
                right += int((r_c > r_r).sum())
        model.train()
        n = max(1, len(idx))
        return {f"{prefix}loss": loss / n, f"{prefix}rewards/accuracies": right / n,
                f"{prefix}rewards/margins": margin / n}
