"""The DPO reference model pi_ref: the policy's frozen starting point, scored without grad and without dropout.

Three forms:
  * :class:`AdapterDisabledReference` for fresh LoRA policies: the same module with its adapters switched off by
    peft's ``disable_adapter()`` context, i.e. the base model. No second copy of the weights.
  * :class:`AdapterReference` for LoRA training continued from a saved adapter (e.g. an SFT adapter): the starting
    adapter, loaded a second time onto the same ``PeftModel`` as a frozen adapter (``"reference"``) and made the
    active one while scoring (TRL's ``ref_adapter_name``). A second copy of the adapter only, not of the base.
  * :class:`FrozenCopyReference` for full fine-tuning: a deep copy taken when the reference is built, in eval mode,
    with ``requires_grad=False``.

A reference is a plain Python object, not an ``nn.Module``: held by the LightningModule (through a closure), its
weights are not submodules, so they are never handed to the optimizer, never written to Lightning checkpoints (the
copy is rebuilt from the same pretrained weights on resume) and never touched by ``module.to(device)``. The frozen
copy therefore follows the data instead: it moves itself to the device of the first batch it scores. The reference
adapter IS part of the policy module (it moves with it); it is kept out of the optimizer and of trainable-only
checkpoints by ``requires_grad=False``, and out of saved adapters by :func:`hipo.models.lora.save_adapter`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from peft import PeftModel
from torch import nn

from hipo.data.batch import TokenBatch
from hipo.losses.types import SegmentLogps
from hipo.models.logprobs import sequence_segment_logps, token_logps
from hipo.models.lora import REFERENCE_ADAPTER, active_adapter, adapter_parameters

ReferenceMode = Literal["auto", "disable_adapter", "reference_adapter", "frozen_copy"]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode (no dropout) and restore each one's previous mode afterwards."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


class Reference:
    """Base class: scores batches with ``self._scoring()`` active, under ``torch.no_grad()`` and eval mode.

    Attributes:
        model: the module that scores (the policy itself, or a frozen copy).
        adapter_name: the peft adapter active while scoring, or None (no adapter, or adapters disabled); what a
            reference cache's fingerprint must cover besides the base weights.
    """

    model: nn.Module
    adapter_name: str | None = None

    @contextmanager
    def _scoring(self) -> Iterator[nn.Module]:
        yield self.model

    def token_logps(self, batch: TokenBatch, chunk_size: int = 1024) -> torch.Tensor:
        """[R, T] reference log-prob of each scored token (0 elsewhere), no grad."""
        with torch.no_grad(), eval_mode(self.model), self._scoring() as model:
            return token_logps(model, batch, chunk_size=chunk_size)

    def segment_logps(self, batch: TokenBatch, chunk_size: int = 1024, paired_tails: bool = False) -> SegmentLogps:
        """Per-sequence, per-segment reference log-prob sums and counts [N, S+1] (and LD-DPO's tails with
        ``paired_tails``), no grad."""
        with torch.no_grad(), eval_mode(self.model), self._scoring() as model:
            return sequence_segment_logps(model, batch, chunk_size=chunk_size, paired_tails=paired_tails)

    def __call__(self, batch: TokenBatch, chunk_size: int = 1024) -> SegmentLogps:
        return self.segment_logps(batch, chunk_size=chunk_size)


class AdapterDisabledReference(Reference):
    """The base model under a LoRA policy: the policy module itself with its adapters disabled while scoring.

    Args:
        policy: the ``PeftModel`` being trained (shared, not copied).
    """

    model: PeftModel

    def __init__(self, policy: PeftModel) -> None:
        if not isinstance(policy, PeftModel):
            raise TypeError(f"AdapterDisabledReference needs a PeftModel, got {type(policy).__name__}")
        self.model = policy

    @contextmanager
    def _scoring(self) -> Iterator[nn.Module]:
        with self.model.disable_adapter():
            yield self.model


class AdapterReference(Reference):
    """The starting adapter of continued LoRA training: a frozen adapter on the policy's own ``PeftModel``, made the
    active adapter while scoring (the trainable adapter is active again afterwards).

    Args:
        policy: the ``PeftModel`` being trained (shared, not copied), holding the frozen adapter ``adapter_name``
            (see :func:`hipo.models.lora.load_reference_adapter`).
        adapter_name: the frozen adapter's name.

    Raises:
        TypeError: ``policy`` is not a ``PeftModel``.
        ValueError: it has no adapter ``adapter_name``, or that adapter has trainable parameters.
    """

    def __init__(self, policy: PeftModel, adapter_name: str = REFERENCE_ADAPTER) -> None:
        if not isinstance(policy, PeftModel):
            raise TypeError(f"AdapterReference needs a PeftModel, got {type(policy).__name__}")
        if adapter_name not in policy.peft_config:
            raise ValueError(
                f"AdapterReference: the model has no adapter {adapter_name!r} (adapters: {sorted(policy.peft_config)});"
                " load it with hipo.models.lora.load_reference_adapter"
            )
        trainable = [name for name, p in adapter_parameters(policy, adapter_name) if p.requires_grad]
        if trainable:
            raise ValueError(f"AdapterReference: {adapter_name!r} has trainable parameters: {trainable[0]}, ...")
        self.model = policy
        self.adapter_name = adapter_name

    @contextmanager
    def _scoring(self) -> Iterator[nn.Module]:
        with active_adapter(self.model, self.adapter_name):  # type: ignore[arg-type]  # checked in __init__
            yield self.model


class FrozenCopyReference(Reference):
    """A frozen deep copy of the policy as it is now (full fine-tuning, or a LoRA policy including its adapter).

    Args:
        policy: the model to copy; the copy shares nothing with it.
    """

    def __init__(self, policy: nn.Module) -> None:
        self.model = copy.deepcopy(policy).eval()
        self.model.requires_grad_(False)
        if isinstance(policy, PeftModel) and not _adapters_disabled(policy):
            self.adapter_name = policy.active_adapter

    @contextmanager
    def _scoring(self) -> Iterator[nn.Module]:
        yield self.model

    def _follow(self, batch: TokenBatch) -> None:
        """Move the copy to the batch's device (the module's ``.to`` does not reach it: it is not a submodule)."""
        device = batch.input_ids.device
        parameter = next(self.model.parameters(), None)
        if parameter is not None and parameter.device != device:
            self.model.to(device)

    def token_logps(self, batch: TokenBatch, chunk_size: int = 1024) -> torch.Tensor:
        self._follow(batch)
        return super().token_logps(batch, chunk_size)

    def segment_logps(self, batch: TokenBatch, chunk_size: int = 1024, paired_tails: bool = False) -> SegmentLogps:
        self._follow(batch)
        return super().segment_logps(batch, chunk_size, paired_tails)


def _adapters_disabled(policy: PeftModel) -> bool:
    """Whether ``policy`` is inside peft's ``disable_adapter()`` context (peft keeps no public flag for it)."""
    return bool(getattr(policy, "_adapters_disabled", False))


def build_reference(policy: nn.Module, mode: ReferenceMode = "auto") -> Reference:
    """The reference for ``policy``.

    Args:
        policy: the model about to be trained.
        mode: ``"auto"``: for a ``PeftModel``, its frozen :data:`~hipo.models.lora.REFERENCE_ADAPTER` when it has
            one (continued training) and the adapters disabled otherwise; a frozen copy for any other model.
            ``"disable_adapter"``; ``"reference_adapter"``; ``"frozen_copy"`` (for a ``PeftModel`` this copies the
            base AND the current adapter: a full second copy, which ``"reference_adapter"`` avoids).
    """
    if mode == "auto":
        if isinstance(policy, PeftModel):
            mode = "reference_adapter" if REFERENCE_ADAPTER in policy.peft_config else "disable_adapter"
        else:
            mode = "frozen_copy"
    if mode == "disable_adapter":
        return AdapterDisabledReference(policy)  # type: ignore[arg-type]  # checked in __init__
    if mode == "reference_adapter":
        return AdapterReference(policy)  # type: ignore[arg-type]  # checked in __init__
    if mode == "frozen_copy":
        return FrozenCopyReference(policy)
    raise ValueError(
        f"build_reference: mode must be 'auto', 'disable_adapter', 'reference_adapter' or 'frozen_copy', got {mode!r}"
    )
