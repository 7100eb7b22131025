"""Preference losses: pure functions of per-segment log-prob sums, and thin ``nn.Module`` wrappers for Hydra."""

from hipo.losses.dpo import DPOOutput, dpo_loss
from hipo.losses.hipo import HiPOOutput, hipo_loss
from hipo.losses.kto import KTOOutput, kto_loss
from hipo.losses.metrics import PairSums, add_sums, metrics_from_sums, pair_metric_sums, pair_metrics
from hipo.losses.modules import DPOLoss, HiPOLoss, KTOLoss, PairedPreferenceLoss, PreferenceLoss, SFTLoss
from hipo.losses.sft import NLLOutput, nll_loss
from hipo.losses.types import LossOutput, SegmentLogps
from hipo.losses.variants import VARIANT_INFO, VARIANTS, PairLogps, VariantOptions, VariantSpec, variant_spec
from hipo.losses.weights import FixedWeights, SegmentWeights, SoftmaxFloorWeights, UncertaintyWeights

__all__ = [
    "VARIANTS",
    "VARIANT_INFO",
    "PairLogps",
    "VariantOptions",
    "VariantSpec",
    "variant_spec",
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
    "dpo_loss",
    "hipo_loss",
    "kto_loss",
    "metrics_from_sums",
    "nll_loss",
    "pair_metric_sums",
    "pair_metrics",
]
