"""One perf variant: a model, a reference, a loss and an optimizer, stepped like training.

A step is a real training step through :meth:`PreferenceModule.compute_loss` (reference -- live or cached -- then
the policy pass and the loss), then backward, gradient clipping and the optimizer step, as Lightning runs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from hipo.config.schema import OptimConfig
from hipo.data.batch import TokenBatch
from hipo.losses.modules import DPOLoss, HiPOLoss, KTOLoss, PreferenceLoss
from hipo.losses.weights import FixedWeights
from hipo.models.loading import enable_gradient_checkpointing, maybe_compile, resolve_dtype
from hipo.models.lora import apply_lora
from hipo.models.reference import build_reference
from hipo.perf.clock import StepClock, StepResult, synchronize
from hipo.perf.config import PerfConfig, VariantConfig, resolve_variant
from hipo.perf.random_pairs import synthetic_batches, synthetic_pairs, useful_tokens
from hipo.perf.shapes import build_shape_model
from hipo.training.module import PreferenceModule
from hipo.training.ref_cache import CachedReference, compute_table, pair_sequences

DPO_BETA = 0.1  # the project's DPO (and KTO) default; TRL's variant uses the same


def build_loss(name: str, segments: list[str], variant: str = "sigmoid") -> PreferenceLoss:
    """The loss modules with the project's default hyper-parameters (HiPO: the paper's fixed weights); ``name`` may
    carry the variant as ``LOSS:VARIANT`` (``dpo:simpo``)."""
    name, _, suffix = name.partition(":")
    variant = suffix or variant
    if name == "dpo":
        return DPOLoss(beta=DPO_BETA, segment_names=segments, variant=variant)
    if name == "hipo":
        weights = FixedWeights([0.25, 0.25, 0.20, 0.30] if len(segments) == 3 else [1.0] * (len(segments) + 1))
        return HiPOLoss(beta=0.2, weights=weights, segment_names=segments, variant=variant)
    if name == "kto":
        if variant != "sigmoid":
            raise ValueError(f"loss kto has no pairwise variant; got {variant!r}")
        return KTOLoss(beta=DPO_BETA, segment_names=segments)
    raise ValueError(f"unknown loss {name!r}")


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class VariantRunner:
    """Builds everything for one variant (seeded: every variant sees the same synthetic batches).

    Args:
        cfg: the perf settings.
        name: the variant's name (for error messages and the report).
        variant: what to build.
    """

    def __init__(self, cfg: PerfConfig, name: str, variant: VariantConfig) -> None:
        variant = resolve_variant(cfg, name, variant)
        self.cfg, self.name, self.variant = cfg, name, variant
        self.device = resolve_device(cfg.device)
        started = time.perf_counter()
        torch.manual_seed(cfg.seed)
        dtype = resolve_dtype(variant.dtype)
        self.autocast_dtype = resolve_dtype(variant.autocast) if variant.autocast else None
        model: nn.Module
        with torch.device(self.device):
            model = build_shape_model(cfg.shape, dtype, variant.attn_implementation, seed=cfg.seed)
        model.train()
        if variant.gradient_checkpointing:
            enable_gradient_checkpointing(model)
        if variant.lora:
            model = apply_lora(model, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=0.0)
        maybe_compile(model, variant.compile)
        self.loss = build_loss(variant.loss, list(cfg.segments), variant.loss_variant)
        segments = len(cfg.segments)
        pairs = synthetic_pairs(cfg.mix, cfg.pairs_per_step * cfg.num_batches, segments, cfg.shape.vocab_size, cfg.seed)
        self.pairs = pairs
        self.batches = [
            b.to(self.device)
            for b in synthetic_batches(
                pairs, cfg.pairs_per_step, segments, self.loss.paired, variant.packed, cfg.pack_length
            )
        ]
        self.reference_setup_s = 0.0
        self.reference = self._reference(model, pairs)
        self.module = PreferenceModule(
            policy=model,
            loss=self.loss,
            reference=self.reference,
            segment_names=list(cfg.segments),
            optim=OptimConfig(lr=cfg.lr, scheduler="constant"),
            logprob_chunk_size=cfg.logprob_chunk_size,
            checkpoint_trainable_only=variant.lora,  # as `hipo train` builds it (only its loop variant saves)
        ).to(self.device)
        self.optimizer = self.module.configure_optimizers()["optimizer"]
        self.parameters = [p for p in self.module.parameters() if p.requires_grad]
        self.trainable = sum(p.numel() for p in self.parameters)
        self.setup_s = time.perf_counter() - started
        self._next = 0

    def _reference(self, model: nn.Module, pairs: list[Any]) -> Any:
        """The live reference function, or a cached one precomputed over every synthetic sequence; None for a
        reference-free loss (as ``hipo train`` builds none)."""
        if not self.loss.needs_reference:
            return None
        chunk = self.cfg.logprob_chunk_size
        if self.variant.reference == "live":
            policy_reference = build_reference(model)
            return lambda batch: policy_reference.segment_logps(batch, chunk_size=chunk)
        started = time.perf_counter()
        # At step 0 the policy IS the reference: score it (adapters off for LoRA) without keeping a frozen copy.
        initial = build_reference(model, mode="disable_adapter") if self.variant.lora else _SelfReference(model)
        table = compute_table(
            lambda batch: initial.segment_logps(batch, chunk_size=chunk),
            pair_sequences(pairs),
            len(self.cfg.segments),
            pad_id=2,
            batch_size=2 * self.cfg.pairs_per_step,
            packed=self.variant.packed,
            pack_length=self.cfg.pack_length,
            device=self.device,
        )
        synchronize(self.device)
        self.reference_setup_s = time.perf_counter() - started
        live: Callable[[TokenBatch], Any] | None = None
        if not self.loss.paired:  # KTO's mismatched KL sequences are not in the table: a live reference scores them
            kl_reference = build_reference(model)
            live = lambda batch: kl_reference.segment_logps(batch, chunk_size=chunk)  # noqa: E731
        return CachedReference(table, live, pad_id=2)

    def next_batch(self) -> tuple[int, TokenBatch]:
        """(index among the distinct batches, the batch) of the next step; the batches are cycled."""
        index = self._next % len(self.batches)
        self._next += 1
        return index, self.batches[index]

    def step(self, index: int | None = None) -> StepResult:
        """One timed training step on batch ``index`` (default: the next batch)."""
        if index is None:
            index, batch = self.next_batch()
        else:
            batch = self.batches[index]
        synchronize(self.device)
        started = time.perf_counter()
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            out = self.module.compute_loss(batch)
        out.loss.backward()
        if self.cfg.gradient_clip:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.cfg.gradient_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        loss = float(out.loss.detach())
        synchronize(self.device)
        return StepResult(time.perf_counter() - started, useful_tokens(batch), loss, index)

    def run(
        self, total_steps: int, before_step: Callable[[], None], after_step: Callable[[StepResult], None]
    ) -> list[StepResult]:
        """``total_steps`` steps on the cycled batches; ``before_step`` runs before each step's clock starts."""
        clock = StepClock(self.device, before_step, after_step)
        for _ in range(total_steps):
            clock.begin()
            clock.add(self.step())
        return clock.finish()

    def close(self) -> None:
        """Nothing to release (the TRL runner has a temporary folder)."""


class _SelfReference:
    """The model itself, scored without grad in eval mode (the reference of a full fine-tune before step 1)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def segment_logps(self, batch: TokenBatch, chunk_size: int = 1024) -> Any:
        from hipo.models.logprobs import sequence_segment_logps
        from hipo.models.reference import eval_mode

        with torch.no_grad(), eval_mode(self.model):
            return sequence_segment_logps(self.model, batch, chunk_size=chunk_size)
