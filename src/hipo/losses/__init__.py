"""Preference losses: pure functions of per-segment log-prob sums, and thin ``nn.Module`` wrappers for Hydra."""

from hipo.losses.dpo import VARIANTS, DPOOutput, check_variant, dpo_loss, preference_term_loss
from hipo.losses.hipo import HiPOOutput, hipo_loss
from hipo.losses.kto import KTOOutput, kto_loss
from hipo.losses.metrics import PairSums, add_sums, metrics_from_sums, pair_metric_sums, pair_metrics
from hipo.losses.modules import DPOLoss, HiPOLoss, KTOLoss, PairedPreferenceLoss, PreferenceLoss, SFTLoss
from hipo.losses.sft import NLLOutput, nll_loss
from hipo.losses.types import LossOutput, SegmentLogps
from hipo.losses.weights import FixedWeights, SegmentWeights, SoftmaxFloorWeights, UncertaintyWeights

__all__ = [
    "VARIANTS",
    "DPOLoss",
    "DPOOutput",
    "FixedWeights",
    "HiPOLoss",
    "HiPOOutput",
    "KTOLoss",
    "KTOOutput",
    "LossOutput",
    "NLLOutput",
    "PairSums",
    "PairedPreferenceLoss",
    "PreferenceLoss",
    "SFTLoss",
    "SegmentLogps",
    "SegmentWeights",
    "SoftmaxFloorWeights",
    "UncertaintyWeights",
    "add_sums",
    "check_variant",
    "dpo_loss",
    "hipo_loss",
    "kto_loss",
    "metrics_from_sums",
    "nll_loss",
    "pair_metric_sums",
    "pair_metrics",
    "preference_term_loss",
]
