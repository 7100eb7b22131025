"""Schemas of ``_target_``-built components: they mirror the constructors' arguments, so Hydra rejects an unknown
key at composition (naming it) instead of failing later inside a constructor."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

# ---- segment weights (loss/weights) ---------------------------------------------------------------------------------


@dataclass
class FixedWeightsConfig:
    """Fixed weights over (segments..., whole); the paper's default over (Rq, Mt, Ra, whole)."""

    _target_: str = "hipo.losses.weights.FixedWeights"
    values: list[float] = field(default_factory=lambda: [0.25, 0.25, 0.20, 0.30])


@dataclass
class UncertaintyWeightsConfig:
    """Learned homoscedastic-uncertainty weights (Kendall et al. 2018): w_k = exp(-s_k), penalty sum_k s_k."""

    _target_: str = "hipo.losses.weights.UncertaintyWeights"
    num_terms: int = "${hipo.num_terms:${segments}}"  # type: ignore[assignment]
    init_log_var: float = 0.0


@dataclass
class SoftmaxFloorWeightsConfig:
    """Learned simplex weights with a floor: w = floor + (1 - K floor) softmax(theta)."""

    _target_: str = "hipo.losses.weights.SoftmaxFloorWeights"
    num_terms: int = "${hipo.num_terms:${segments}}"  # type: ignore[assignment]
    floor: float = 0.05


@dataclass
class StagedWeightsConfig:
    """Fixed weight vectors trained one after another: ``stages[i]`` for ``steps[i]`` steps, the last until the end."""

    _target_: str = "hipo.losses.weights.StagedWeights"
    stages: list[list[float]] = MISSING
    steps: list[int] = MISSING


# ---- losses ---------------------------------------------------------------------------------------------------------


@dataclass
class DPOLossConfig:
    """Whole-response DPO (sigmoid | ipo | hinge | robust; label smoothing = conservative DPO)."""

    _target_: str = "hipo.losses.modules.DPOLoss"
    name: str = "dpo"
    beta: float = 0.1
    variant: str = "sigmoid"
    label_smoothing: float = 0.0
    segment_names: list[str] = "${segments}"  # type: ignore[assignment]


@dataclass
class HiPOLossConfig:
    """Per-segment DPO terms plus the whole-response term, fused by ``weights``."""

    _target_: str = "hipo.losses.modules.HiPOLoss"
    name: str = "hipo"
    beta: float = 0.2
    variant: str = "sigmoid"
    label_smoothing: float = 0.0
    weights: Any = MISSING
    segment_names: list[str] = "${segments}"  # type: ignore[assignment]


@dataclass
class KTOLossConfig:
    """KTO on unpaired desirable/undesirable examples, KL reference point estimated from mismatched batch pairs."""

    _target_: str = "hipo.losses.modules.KTOLoss"
    name: str = "kto"
    beta: float = 0.1
    desirable_weight: float = 1.0
    undesirable_weight: float = 1.0
    segment_names: list[str] = "${segments}"  # type: ignore[assignment]
