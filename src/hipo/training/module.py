"""The one LightningModule for every preference loss.

It coordinates; it decides nothing about the loss. Per step it computes the policy's per-segment log-probs over all
sequences of the batch in one forward pass, obtains the reference's (a live no-grad pass or the on-disk cache;
none for a loss that needs none, such as SFT), calls the injected loss module and logs what the loss reports.
Which loss, which weights, paired, unpaired or single-response data: all of it comes from config through
``_target_``. Validation measures the held-out preference metrics (when the loss has a reference) and the held-out
NLL of the chosen responses.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, cast

import lightning as L
import torch
from torch import nn

from hipo.config.schema import OptimConfig
from hipo.data.batch import TokenBatch
from hipo.losses.modules import PreferenceLoss
from hipo.losses.types import LossOutput, SegmentLogps
from hipo.models.logprobs import sequence_segment_logps
from hipo.training.collective import TorchCollective
from hipo.training.held_out import HeldOutNLL, HeldOutPreferenceMetrics

ReferenceFn = Callable[[TokenBatch], SegmentLogps]


class PreferenceModule(L.LightningModule):
    """Policy + reference + loss (whose learned segment weights, if any, are parameters of this module).

    Args:
        policy: the causal LM being trained (a PeftModel with LoRA).
        loss: a ``hipo.losses.modules.PreferenceLoss`` (DPO, HiPO, KTO, ...).
        reference: callable giving the reference's per-segment log-probs of a batch (no grad). It is held outside
            the module's parameters: it is never trained nor checkpointed. None for a loss that needs none.
        segment_names: the named segments, in order (the loss's metric names).
        optim: optimizer and schedule settings.
        logprob_chunk_size: rows per chunk of the selected-token log-prob computation.
        checkpoint_trainable_only: checkpoints hold only trainable tensors (LoRA adapters, learned weights) instead
            of the frozen base model as well; resuming then loads them onto the freshly built base model.
        policy_starts_as_reference: the policy equals the reference until the first step (a fresh LoRA adapter
            has B = 0), so validation before training reuses the reference log-probs instead of a second pass.
    """

    def __init__(
        self,
        policy: nn.Module,
        loss: PreferenceLoss,
        reference: ReferenceFn | None,
        segment_names: list[str],
        optim: OptimConfig,
        logprob_chunk_size: int = 1024,
        checkpoint_trainable_only: bool = False,
        policy_starts_as_reference: bool = False,
    ) -> None:
        super().__init__()
        if reference is None and loss.needs_reference:
            raise ValueError(f"{type(loss).__name__} needs a reference; got none")
        self.policy = policy.train()  # from_pretrained returns eval mode; LoRA dropout must be active in training
        self.loss_fn = loss
        self._reference = reference
        self.segment_names = list(segment_names)
        self.optim = optim
        self.logprob_chunk_size = logprob_chunk_size
        self.held_out = HeldOutPreferenceMetrics([*self.segment_names, "whole"])
        self.held_out_nll = HeldOutNLL([*self.segment_names, "whole"])
        self.held_out_results: list[dict[str, float]] = []
        self.held_out_steps: list[int] = []  # the optimizer step each entry of held_out_results was measured at
        # True while the policy provably equals the reference (fresh LoRA: B = 0); validation then skips the
        # policy pass. Cleared by the first optimizer step.
        self.policy_equals_reference = policy_starts_as_reference
        self._val_reference: dict[tuple[int, ...], SegmentLogps] = {}  # the reference is frozen: score val once
        self.checkpoint_trainable_only = checkpoint_trainable_only
        self.strict_loading = not checkpoint_trainable_only

    # ---- log-probs -------------------------------------------------------------------------------------------------
    def policy_logps(self, batch: TokenBatch) -> SegmentLogps:
        """Per-segment log-prob sums of the policy, [num_sequences, S+1] (grad flows when enabled)."""
        tails = self.loss_fn.reads_tails and self.training  # LD-DPO's loss term; held-out metrics read sums alone
        return sequence_segment_logps(self.policy, batch, chunk_size=self.logprob_chunk_size, paired_tails=tails)

    def reference_logps(self, batch: TokenBatch) -> SegmentLogps:
        """Per-segment log-prob sums of the reference, [num_sequences, S+1], never with grad."""
        if self._reference is None:
            raise RuntimeError(f"{type(self.loss_fn).__name__} was built without a reference")
        with torch.no_grad():
            return self._reference(batch).detach()

    def compute_loss(self, batch: TokenBatch) -> LossOutput:
        """The loss of one batch: reference first (no grad; none when the loss needs none), then the policy pass and
        the loss call."""
        reference = self.reference_logps(batch) if self.loss_fn.needs_reference else None
        policy = self.policy_logps(batch)
        return self.loss_fn(policy, reference, self._with_nll_tokens(batch, policy))

    def _with_nll_tokens(self, batch: TokenBatch, policy: SegmentLogps) -> TokenBatch:
        """In DDP training of a loss with an NLL term, ``batch`` with ``nll_tokens`` = the mean over processes of
        their chosen tokens (one all-reduce), so a process with more tokens weighs more, as in one process with the
        whole batch; otherwise ``batch`` itself (each call on every rank: the all-reduce is collective)."""
        trainer = self._trainer
        if trainer is None or trainer.world_size <= 1 or not self.training or not self.loss_fn.trains_nll:
            return batch
        local = self.loss_fn.chosen_logps(policy, batch).counts[:, -1].sum().to(torch.float64)
        total = trainer.strategy.reduce(local, reduce_op="sum")
        return dataclasses.replace(batch, nll_tokens=max(float(total) / trainer.world_size, 1.0))

    # ---- Lightning hooks -------------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        # Under DDP the loss reaches the other processes for state defined over the whole batch (BCO, AOT).
        if self._trainer is not None and self.trainer.world_size > 1:
            self.loss_fn.collective = TorchCollective()

    def training_step(self, batch: TokenBatch, batch_idx: int) -> torch.Tensor:
        self.policy_equals_reference = False
        self.loss_fn.set_step(self.global_step)  # scheduled weights (e.g. StagedWeights) follow the optimizer step
        out = self.compute_loss(batch)
        size = int(batch.example_ids.numel())
        self.log("train/loss", out.loss.detach(), prog_bar=True, batch_size=size)
        metrics = {f"train/{key}": value.detach().float() for key, value in out.metrics.items()}
        self.log_dict(metrics, batch_size=size)
        self.log("train/scored_tokens", float(batch.num_scored_tokens), batch_size=size, reduce_fx="sum")
        return out.loss

    def on_validation_epoch_start(self) -> None:
        self.held_out.reset()
        self.held_out_nll.reset()

    def validation_step(self, batch: TokenBatch, batch_idx: int) -> None:
        valid = batch.example_ids >= 0  # -1: shard padding
        chosen_rows = int(batch.example_ids.numel())  # rows 0..B-1: the chosen responses (then, paired, rejected)
        if not self.loss_fn.needs_reference:
            policy = self.policy_logps(batch)
            if self.loss_fn.paired:  # a reference-free preference loss: its rewards are beta * log pi
                zeros = SegmentLogps(torch.zeros_like(policy.sums), policy.counts)
                self.held_out.update(policy, zeros, beta=self.loss_fn.beta, valid=valid, pair_ids=batch.example_ids)
            self.held_out_nll.update(policy.rows(0, chosen_rows), valid)
            return
        key = (batch_idx, *batch.example_ids.tolist())
        reference = self._val_reference.get(key)
        if reference is None or reference.sums.device != batch.input_ids.device:
            reference = self.reference_logps(batch)
            self._val_reference[key] = reference
        policy = reference if self.policy_equals_reference else self.policy_logps(batch)
        beta = self.loss_fn.beta
        self.held_out.update(policy, reference, beta=beta, valid=valid, pair_ids=batch.example_ids)
        self.held_out_nll.update(policy.rows(0, chosen_rows), valid)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.world_size > 1:  # each rank scored its shard: sum the exact accumulators
            self.held_out.all_reduce()
            self.held_out_nll.all_reduce()
        results = {**self.held_out.compute(), **self.held_out_nll.compute()}
        if self.trainer.sanity_checking:  # a partial pass over a few batches: not a measurement
            return
        self.held_out_results.append(results)
        self.held_out_steps.append(self.global_step)
        for key, value in results.items():
            self.log(f"val/{key}", value, rank_zero_only=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.checkpoint_trainable_only:  # trainable tensors and the loss's state (BCO's running reward mean)
            trainable = {name for name, p in self.named_parameters() if p.requires_grad}
            trainable |= {f"loss_fn.{name}" for name, _ in self.loss_fn.named_buffers()}
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}

    # ---- optimization ----------------------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        policy_params = [p for p in self.policy.parameters() if p.requires_grad]
        weight_params = [p for p in self.loss_fn.parameters() if p.requires_grad]
        groups: list[dict[str, Any]] = [{"params": policy_params, "weight_decay": self.optim.weight_decay}]
        if weight_params:
            groups.append({"params": weight_params, "lr": self.optim.weights_lr, "weight_decay": 0.0})
        betas = cast("tuple[float, float]", tuple(self.optim.betas))
        optimizer = torch.optim.AdamW(groups, lr=self.optim.lr, betas=betas)
        total = max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer is not None else 1
        schedule = lr_schedule(self.optim.scheduler, self.optim.warmup_steps, total)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def lr_schedule(kind: str, warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the base learning rate at optimizer step ``step``: linear warm-up, then cosine/linear/constant.

    Raises:
        ValueError: for an unknown ``kind``.
    """
    if kind not in ("cosine", "linear", "constant"):
        raise ValueError(f"optim.scheduler must be cosine, linear or constant, got {kind!r}")

    def multiplier(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        if kind == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if kind == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return multiplier
