"""``nn.Module`` wrappers of the pure losses, built by Hydra (``_target_``) and injected into the LightningModule.

Each wrapper carries its hyper-parameters, splits the batch's per-segment log-probs ([N, S+1] ``SegmentLogps``) into
the loss's inputs, reduces the per-example losses by their mean (plus any learned-weight penalty) and reports metrics
keyed WITHOUT the ``train/`` / ``val/`` prefix (the LightningModule adds it):

* paired losses (``paired = True``; rows 0..B-1 chosen, B..2B-1 rejected), each term scored by a variant of
  :mod:`hipo.losses.variants`: ``rewards/margin/<name>`` and ``rewards/accuracy/<name>`` for every segment and
  ``whole`` (the implicit per-segment rewards are informative even for DPO, whose loss uses only the whole column;
  beta * log pi for a reference-free variant); HiPO adds ``weight/<name>`` and ``term_loss/<name>`` (mean
  unweighted term loss over the pairs where the term is present); ``bco_pair`` adds ``bco/shift/<name>``.
* KTO (``paired = False``; rows 0..N-1 examples, N..N+K-1 mismatched KL pairs): ``kto/kl``, ``rewards/desirable``,
  ``rewards/undesirable`` (mean beta * log-ratio of each class present in the batch); segment-level KTO reports
  ``kto/kl/<name>`` per term and HiPO's ``weight/<name>`` / ``term_loss/<name>``.
* SFT (``responses_only = True``; rows 0..N-1 the chosen responses, no reference): ``nll/<name>`` per term.

Every loss also reports ``nll``, the per-token mean NLL of the batch's chosen (desirable) responses
(:mod:`hipo.losses.sft`); with ``nll_weight = α > 0`` a preference loss adds ``α · nll`` to its loss (RPO, TRL's
``rpo_alpha``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from hipo.data.batch import TokenBatch
from hipo.data.segmented import DEFAULT_SEGMENTS
from hipo.losses.dpo import dpo_loss
from hipo.losses.hipo import hipo_loss
from hipo.losses.kto import kto_loss
from hipo.losses.metrics import pair_metrics
from hipo.losses.segment_kto import segment_kto_loss
from hipo.losses.sft import nll_loss
from hipo.losses.types import BatchCollective, LossOutput, SegmentLogps
from hipo.losses.variants import PairLogps, VariantOptions, VariantSpec, bco_batch_sums, variant_spec
from hipo.losses.weights import SegmentWeights

WHOLE = "whole"


class PreferenceLoss(nn.Module, ABC):
    """Base class of the loss modules, and the one interface the training loop and the app use (they never probe).

    Every subclass sets ``paired`` (class attribute) and ``beta``; ``weights`` is None unless the subclass assigns its
    segment-weight submodule (HiPO). ``set_step`` is called by the training loop before every batch. A subclass
    names the rows of its chosen responses (:meth:`chosen_logps`); :meth:`with_nll` adds the NLL term.

    Args:
        segment_names: the S named segments in column order (the last column of the log-probs is ``whole``).
        nll_weight: α >= 0, the weight of the chosen responses' per-token mean NLL added to the loss (RPO).

    Attributes:
        paired: whether the loss consumes chosen/rejected pairs (else unpaired examples, as KTO).
        responses_only: whether it consumes the chosen responses alone (SFT): no rejected side, no KL rows.
        needs_reference: whether it reads the reference's log-probs (SFT and the reference-free variants SimPO, CPO
            and ORPO do not: no reference is built or run).
        reads_tails: whether it reads LD-DPO's tails (``SegmentLogps.tails``): the caller then scores with
            ``paired_tails=True``, the policy and the reference alike.
        beta: inverse temperature of the implicit reward beta * (log pi - log pi_ref) (also the held-out metrics').
        weights: the ``SegmentWeights`` submodule fusing the S+1 terms, or None for a loss without segment weights.
        segment_names: the S named segments.
        term_names: ``segment_names + ["whole"]``, the metric names of the S+1 columns.
        collective: the processes' collective under DDP (None: one process), for the state that is defined over the
            whole batch (BCO's reward mean, AOT's sorting).
    """

    paired: ClassVar[bool]
    responses_only: ClassVar[bool] = False
    needs_reference: bool = True  # an instance may narrow it (a reference-free variant)
    reads_tails: bool = False  # an instance may set it (LD-DPO's ld_alpha)
    beta: float
    weights: SegmentWeights | None
    collective: BatchCollective | None = None  # set by the training loop under DDP: gathers batch-wide state

    def __init__(self, segment_names: Sequence[str], nll_weight: float = 0.0) -> None:
        super().__init__()
        if isinstance(segment_names, str):
            raise ValueError(f"{type(self).__name__}: segment_names must be a list, not the string {segment_names!r}")
        names = [str(n) for n in segment_names]
        if len(set(names)) != len(names) or WHOLE in names or any(not n for n in names):
            raise ValueError(f"{type(self).__name__}: segment_names must be distinct, non-empty, not 'whole'; {names}")
        if not 0.0 <= float(nll_weight) < float("inf"):
            raise ValueError(f"{type(self).__name__}: nll_weight must be finite and >= 0; got {nll_weight!r}")
        self.segment_names = names
        self.term_names = [*names, WHOLE]
        self.nll_weight = float(nll_weight)
        self.weights = None  # an instance attribute: a subclass's weight module replaces it as a registered submodule

    def set_step(self, step: int) -> None:
        """Reports the current global (optimizer) step before a batch: scheduled segment weights (``StagedWeights``)
        follow it; a no-op for other weights and for a loss without weights."""
        if self.weights is not None:
            self.weights.set_step(step)

    def check_logps(self, policy: SegmentLogps, reference: SegmentLogps | None) -> SegmentLogps:
        """``reference``, after checking that policy and reference sums/counts are all [N, S+1] with equal counts.

        Raises:
            ValueError: no reference, shapes that differ, or token counts that differ.
        """
        if reference is None:
            raise ValueError(f"{type(self).__name__}: needs the reference's log-probs; got None")
        shapes = {
            "policy.sums": tuple(policy.sums.shape),
            "policy.counts": tuple(policy.counts.shape),
            "reference.sums": tuple(reference.sums.shape),
            "reference.counts": tuple(reference.counts.shape),
        }
        expected = len(self.term_names)
        if policy.sums.dim() != 2 or len(set(shapes.values())) != 1 or policy.sums.shape[1] != expected:
            raise ValueError(
                f"{type(self).__name__}: expected [N, {expected}] log-probs for terms {self.term_names}; got {shapes}"
            )
        if not torch.equal(policy.counts, reference.counts):
            raise ValueError(
                f"{type(self).__name__}: policy and reference token counts differ (a stale reference cache or a "
                "different tokenization?)"
            )
        return reference

    @abstractmethod
    def chosen_logps(self, policy: SegmentLogps, batch: TokenBatch) -> SegmentLogps:
        """The rows of ``policy`` [N, S+1] that hold the batch's chosen (desirable) responses."""

    def with_nll(self, out: LossOutput, policy: SegmentLogps, batch: TokenBatch) -> LossOutput:
        """``out`` with the metric ``nll`` (per-token mean NLL of the chosen responses) and, when ``nll_weight`` > 0,
        ``nll_weight * nll`` added to its loss. A batch without a chosen response adds nothing."""
        chosen = self.chosen_logps(policy, batch)
        if chosen.sums.shape[0] == 0 or int(chosen.counts[:, -1].sum()) == 0:
            return out
        nll = nll_loss(chosen.sums[:, -1], chosen.counts[:, -1], nll_tokens(batch))
        metrics = {**out.metrics, "nll": nll.batch_mean}
        loss = out.loss + self.nll_weight * nll.loss if self.nll_weight > 0 else out.loss
        return LossOutput(loss=loss, per_example=out.per_example, metrics=metrics)

    @property
    def trains_nll(self) -> bool:
        """Whether the loss holds the chosen responses' per-token NLL (SFT, or ``nll_weight`` > 0), whose
        normaliser under DDP is every process's token count (``TokenBatch.nll_tokens``)."""
        return self.responses_only or self.nll_weight > 0

    @abstractmethod
    def forward(self, policy: SegmentLogps, reference: SegmentLogps | None, batch: TokenBatch) -> LossOutput:
        """The batch loss from the policy's and reference's per-segment log-probs [N, S+1] (``reference`` is None
        exactly for a loss that does not need one)."""


def nll_tokens(batch: TokenBatch | None) -> float | None:
    """The token count a batch's NLL divides by (``TokenBatch.nll_tokens``); None for its own count, and for a call
    on log-probs alone (no batch)."""
    return None if batch is None else batch.nll_tokens


def checked_weights(loss: PreferenceLoss, weights: SegmentWeights | None) -> SegmentWeights:
    """``weights`` when it is a ``SegmentWeights`` module giving one weight per term of ``loss`` (S+1)."""
    name = type(loss).__name__
    if not isinstance(weights, SegmentWeights):
        raise ValueError(f"{name}: weights must be a hipo.losses.weights.SegmentWeights; got {type(weights)}")
    with torch.no_grad():
        shape = tuple(weights().shape)
    if shape != (len(loss.term_names),):
        raise ValueError(
            f"{name}: the weight module gives shape {shape} but the terms are {loss.term_names} "
            f"({len(loss.term_names)} = S+1 weights needed)"
        )
    return weights


def term_loss_metrics(
    names: Sequence[str], weights: torch.Tensor, term_losses: torch.Tensor, term_mask: torch.Tensor
) -> dict[str, torch.Tensor]:
    """``weight/<name>`` and ``term_loss/<name>`` (mean unweighted loss where the term is present) per term.

    Args:
        weights: [S+1]; term_losses: [N, S+1]; term_mask: [N, S+1] bool.
    """
    metrics: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        present = term_mask.sum(0)
        term_means = term_losses.detach().sum(0) / present.clamp(min=1)
    for k, (name, n) in enumerate(zip(names, present.tolist(), strict=True)):
        metrics[f"weight/{name}"] = weights[k].detach()
        if n > 0:
            metrics[f"term_loss/{name}"] = term_means[k]
    return metrics


class PairedPreferenceLoss(PreferenceLoss):
    """Base of the pairwise losses: rows 0..B-1 chosen, B..2B-1 rejected, each term scored by a variant of
    :mod:`hipo.losses.variants` (or a weighted combination of them).

    Batch-wide state follows the whole batch. ``bco_pair``'s running mean of the implicit rewards is kept per term in
    buffers (``bco_reward_sum``, ``bco_reward_count``: saved in checkpoints, so a resumed run continues it), updated
    in training from every process's rewards (one all-reduce). ``aot`` and ``aot_unpaired`` sort the pairs of every
    process together (a differentiable all-gather), so N processes sort as one process holding the whole batch.

    Args:
        beta: inverse temperature of the implicit reward beta * (log pi - log pi_ref).
        segment_names: the S named segments.
        variant: a variant name, or a list of them (MPO-style combination weighted by ``variant_weights``).
        label_smoothing: eps of the variants that take one (cDPO, rDPO's flip rate, EXO, AOT, SimPO, CPO); None:
            each variant's default (EXO 1e-3, else 0).
        nll_weight: α, the weight of the chosen responses' NLL added to the loss (RPO); None: the variant's own
            (1 for CPO and ORPO, else 0).
        variant_weights: one weight per variant of a combination (None: 1 each).
        f_divergence: ``reverse_kl`` (DPO) | ``forward_kl`` | ``js_divergence`` | ``alpha_divergence``.
        f_alpha: alpha of ``alpha_divergence``.
        discopop_tau: DiscoPOP's tau.
        simpo_gamma: SimPO's target margin gamma.
        bco_running_mean: ``bco_pair`` shifts the rewards by their running mean (the BCO paper); False: no shift
            (TRL 1.16's ``bco_pair``).
        ld_alpha: LD-DPO (Liu et al. 2024): every log-prob sum of the variant's terms becomes ``shared + ld_alpha *
            tail``, the tail being the tokens past the length the pair's two sides share, per term (each segment
            against the same segment of the other side); in [0, 1], None: off. The NLL term and the held-out
            metrics read the plain sums.

    Raises:
        ValueError: bad segment names or NLL weight, or an invalid variant setting (:func:`check_spec`).
    """

    paired = True

    def __init__(
        self,
        beta: float = 0.1,
        segment_names: Sequence[str] = DEFAULT_SEGMENTS,
        variant: str | Sequence[str] = "sigmoid",
        label_smoothing: float | None = None,
        nll_weight: float | None = None,
        variant_weights: Sequence[float] | None = None,
        f_divergence: str = "reverse_kl",
        f_alpha: float = 0.5,
        discopop_tau: float = 0.05,
        simpo_gamma: float = 0.5,
        bco_running_mean: bool = True,
        ld_alpha: float | None = None,
    ) -> None:
        if ld_alpha is not None and not 0.0 <= float(ld_alpha) <= 1.0:
            raise ValueError(f"ld_alpha must lie in [0, 1] (1: no down-weighting) or be null; got {ld_alpha!r}")
        weights = None if variant_weights is None else tuple(float(w) for w in variant_weights)
        options = VariantOptions(weights, str(f_divergence), float(f_alpha), float(discopop_tau), float(simpo_gamma))
        spec = variant_spec(beta, variant if isinstance(variant, str) else list(variant), label_smoothing, options)
        super().__init__(segment_names, spec.default_nll_weight if nll_weight is None else nll_weight)
        self.spec: VariantSpec = spec
        self.beta = spec.beta
        self.variant = spec.variants[0] if len(spec.variants) == 1 else list(spec.variants)
        self.label_smoothing = spec.label_smoothing
        self.options = options
        self.needs_reference = spec.needs_reference
        self.bco_running_mean = "bco_pair" in spec.variants and bool(bco_running_mean)
        self.ld_alpha = None if ld_alpha is None else float(ld_alpha)
        self.reads_tails = self.ld_alpha is not None
        if self.bco_running_mean:
            terms = self.loss_terms()
            self.register_buffer("bco_reward_sum", torch.zeros(terms, dtype=torch.float64))
            self.register_buffer("bco_reward_count", torch.zeros(terms, dtype=torch.float64))

    def loss_terms(self) -> int:
        """How many columns the loss scores: S+1 (HiPO) or 1 (the whole response)."""
        return len(self.term_names)

    def split(self, logps: SegmentLogps) -> tuple[SegmentLogps, SegmentLogps]:
        """(chosen rows 0..B-1, rejected rows B..2B-1) of [2B, S+1] log-probs."""
        rows = logps.sums.shape[0]
        if rows % 2 or rows == 0:
            raise ValueError(f"{type(self).__name__}: a paired batch needs an even, positive row count; got {rows}")
        half = rows // 2
        return logps.rows(0, half), logps.rows(half, rows)

    def chosen_logps(self, policy: SegmentLogps, batch: TokenBatch) -> SegmentLogps:
        return self.split(policy)[0]

    def checked_reference(self, policy: SegmentLogps, reference: SegmentLogps | None) -> SegmentLogps | None:
        """The reference after :meth:`check_logps` when the variant reads one; None for a reference-free variant
        (whose policy shapes are checked alone)."""
        if self.needs_reference:
            return self.check_logps(policy, reference)
        expected = len(self.term_names)
        if policy.sums.dim() != 2 or policy.sums.shape[1] != expected or policy.counts.shape != policy.sums.shape:
            raise ValueError(
                f"{type(self).__name__}: expected [N, {expected}] log-probs for terms {self.term_names}; got "
                f"{tuple(policy.sums.shape)} sums, {tuple(policy.counts.shape)} counts"
            )
        return None

    def pair_logps(self, policy: SegmentLogps, reference: SegmentLogps | None, columns: slice) -> PairLogps:
        """The loss's inputs from [2B, S+1] log-probs: the ``columns`` of each side, [B, K]."""
        reference = self.checked_reference(policy, reference)
        chosen, rejected = self.split(policy)
        ref_chosen = ref_rejected = None
        if reference is not None:
            chosen_ref, rejected_ref = self.split(reference)
            ref_chosen, ref_rejected = self.term_sums(chosen_ref, columns), self.term_sums(rejected_ref, columns)
        return PairLogps(
            self.term_sums(chosen, columns),
            self.term_sums(rejected, columns),
            ref_chosen,
            ref_rejected,
            chosen.counts[:, columns],
            rejected.counts[:, columns],
        )

    def term_sums(self, side: SegmentLogps, columns: slice) -> torch.Tensor:
        """The sums the variant scores, [B, K]: the plain sums, or LD-DPO's ``shared + ld_alpha * tail``."""
        if self.ld_alpha is None:
            return side.sums[:, columns]
        if side.tails is None:
            raise ValueError(
                f"{type(self).__name__}: ld_alpha reads the log-probs past the shared length (SegmentLogps.tails), "
                "which these log-probs lack: score with paired_tails=True (a cached reference has none)"
            )
        return (side.sums - (1.0 - self.ld_alpha) * side.tails)[:, columns]

    def implicit_rewards(
        self, policy: SegmentLogps, reference: SegmentLogps | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Implicit rewards beta * (log pi - log pi_ref) per pair and term, detached (beta * log pi without a
        reference).

        Args:
            policy: [2B, S+1] policy log-prob sums and counts.
            reference: [2B, S+1] reference log-prob sums and counts (None for a reference-free variant).

        Returns:
            (chosen [B, S+1], rejected [B, S+1], mask [B, S+1] bool: term has a token on at least one side).
        """
        pairs = self.pair_logps(policy, reference, slice(None))
        chosen, rejected = pairs.logratios()
        return self.beta * chosen.detach(), self.beta * rejected.detach(), pairs.term_mask()

    def batch_pairs(self, pairs: PairLogps) -> tuple[PairLogps, slice]:
        """The pairs every process holds, and the rows of this process's own among them (all, in one process).

        Only a batch-wide variant gathers (AOT sorts the whole batch); the gather keeps gradients to this process's
        rows, so each process's loss is the mean over the whole batch and DDP's mean of gradients is its gradient.
        """
        rows = pairs.chosen.shape[0]
        if self.collective is None or not self.spec.batch_wide or not self.training:
            return pairs, slice(0, rows)
        gather = self.collective.all_gather
        sizes = self.collective.all_gather_sizes(rows)
        start = sum(sizes[: self.collective.rank])

        def gathered(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else gather(t, sizes)

        chosen, rejected = gather(pairs.chosen, sizes), gather(pairs.rejected, sizes)
        whole = PairLogps(
            chosen,
            rejected,
            gathered(pairs.ref_chosen),
            gathered(pairs.ref_rejected),
            gathered(pairs.chosen_counts),
            gathered(pairs.rejected_counts),
        )
        return whole, slice(start, start + rows)

    def bco_shift(self, pairs: PairLogps) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """``bco_pair``'s delta per term [K] (this batch's rewards included; the buffers advance in training), and
        its metrics; (None, {}) without the running mean."""
        if not self.bco_running_mean:
            return None, {}
        rho_w, rho_l = pairs.logratios()
        sums, counts = bco_batch_sums(self.beta * rho_w, self.beta * rho_l, pairs.term_mask())
        if self.collective is not None and self.training:
            sums, counts = self.collective.all_reduce_sum(sums), self.collective.all_reduce_sum(counts)
        total_sum = self.get_buffer("bco_reward_sum") + sums
        total_count = self.get_buffer("bco_reward_count") + counts
        if self.training:
            self.get_buffer("bco_reward_sum").copy_(total_sum)
            self.get_buffer("bco_reward_count").copy_(total_count)
        shift = torch.where(total_count > 0, total_sum / total_count.clamp(min=1.0), torch.zeros_like(total_sum))
        names = self.term_names[-shift.shape[0] :]
        return shift.to(rho_w.dtype), {f"bco/shift/{name}": shift[k].float() for k, name in enumerate(names)}


class DPOLoss(PairedPreferenceLoss):
    """DPO (or a variant) on the whole-response column.

    Args: those of :class:`PairedPreferenceLoss` (``segment_names`` for the per-segment reward metrics).
    """

    def loss_terms(self) -> int:
        return 1

    def forward(self, policy: SegmentLogps, reference: SegmentLogps | None, batch: TokenBatch) -> LossOutput:
        chosen_rewards, rejected_rewards, mask = self.implicit_rewards(policy, reference)
        local = self.pair_logps(policy, reference, slice(-1, None))
        shift, shift_metrics = self.bco_shift(local)
        pairs, own = self.batch_pairs(local)
        out = dpo_loss(
            pairs.chosen[:, 0],
            pairs.rejected[:, 0],
            None if pairs.ref_chosen is None else pairs.ref_chosen[:, 0],
            None if pairs.ref_rejected is None else pairs.ref_rejected[:, 0],
            beta=self.beta,
            variant=self.variant,
            label_smoothing=self.label_smoothing,
            chosen_counts=None if pairs.chosen_counts is None else pairs.chosen_counts[:, 0],
            rejected_counts=None if pairs.rejected_counts is None else pairs.rejected_counts[:, 0],
            options=self.options,
            bco_shift=shift,
        )
        metrics = pair_metrics(chosen_rewards, rejected_rewards, mask, self.term_names)
        metrics.update(shift_metrics)
        loss = LossOutput(loss=out.losses.mean(), per_example=out.losses[own], metrics=metrics)
        return self.with_nll(loss, policy, batch)


class HiPOLoss(PairedPreferenceLoss):
    """Segment-level HiPO loss: per-segment and whole-response terms, each scored by the variant, fused by a
    weight module.

    Args: as :class:`PairedPreferenceLoss`, plus ``weights``: a ``SegmentWeights`` module with S+1 terms (a
    submodule: learned weights are parameters). ``beta`` is shared by all terms.
    """

    weights: SegmentWeights  # always set (validated): the base's ``SegmentWeights | None`` narrowed

    def __init__(
        self,
        beta: float = 0.2,
        weights: SegmentWeights | None = None,
        variant: str | Sequence[str] = "sigmoid",
        label_smoothing: float | None = None,
        segment_names: Sequence[str] = DEFAULT_SEGMENTS,
        nll_weight: float | None = None,
        variant_weights: Sequence[float] | None = None,
        f_divergence: str = "reverse_kl",
        f_alpha: float = 0.5,
        discopop_tau: float = 0.05,
        simpo_gamma: float = 0.5,
        bco_running_mean: bool = True,
        ld_alpha: float | None = None,
    ) -> None:
        super().__init__(
            beta,
            segment_names,
            variant,
            label_smoothing,
            nll_weight,
            variant_weights,
            f_divergence,
            f_alpha,
            discopop_tau,
            simpo_gamma,
            bco_running_mean,
            ld_alpha,
        )
        self.weights = checked_weights(self, weights)

    def forward(self, policy: SegmentLogps, reference: SegmentLogps | None, batch: TokenBatch) -> LossOutput:
        local = self.pair_logps(policy, reference, slice(None))
        shift, shift_metrics = self.bco_shift(local)
        pairs, own = self.batch_pairs(local)
        weights = self.weights()
        out = hipo_loss(
            pairs.chosen,
            pairs.rejected,
            pairs.ref_chosen,
            pairs.ref_rejected,
            weights,
            beta=self.beta,
            chosen_counts=pairs.chosen_counts,
            rejected_counts=pairs.rejected_counts,
            variant=self.variant,
            label_smoothing=self.label_smoothing,
            options=self.options,
            bco_shift=shift,
        )
        loss = out.losses.mean() + self.weights.penalty()
        chosen_rewards, rejected_rewards = out.chosen_rewards[own], out.rejected_rewards[own]
        metrics = pair_metrics(chosen_rewards, rejected_rewards, local.term_mask(), self.term_names)
        metrics.update(term_loss_metrics(self.term_names, weights, out.term_losses, out.term_mask))
        metrics.update(shift_metrics)
        return self.with_nll(LossOutput(loss=loss, per_example=out.losses[own], metrics=metrics), policy, batch)


class KTOLoss(PreferenceLoss):
    """KTO on unpaired examples (rows 0..N-1) with the KL reference point from rows N..N+K-1.

    Args:
        beta: inverse temperature.
        desirable_weight: w_d, the desirable examples' weight.
        undesirable_weight: w_u, the undesirable examples' weight.
        segment_names: the S named segments (only the whole column enters KTO).
        nll_weight: α, the weight of the desirable responses' NLL added to the loss (0: none).
    """

    paired = False

    def __init__(
        self,
        beta: float = 0.1,
        desirable_weight: float = 1.0,
        undesirable_weight: float = 1.0,
        segment_names: Sequence[str] = DEFAULT_SEGMENTS,
        nll_weight: float = 0.0,
    ) -> None:
        super().__init__(segment_names, nll_weight)
        name = type(self).__name__
        if not beta > 0:
            raise ValueError(f"{name}: beta must be positive; got {beta!r}")
        if desirable_weight < 0 or undesirable_weight < 0:
            raise ValueError(f"{name}: class weights must be >= 0; got {desirable_weight!r}, {undesirable_weight!r}")
        self.beta = float(beta)
        self.desirable_weight = float(desirable_weight)
        self.undesirable_weight = float(undesirable_weight)

    def chosen_logps(self, policy: SegmentLogps, batch: TokenBatch) -> SegmentLogps:
        num_examples, desirable = unpaired_rows(self, policy, batch)
        examples = policy.rows(0, num_examples)
        return SegmentLogps(examples.sums[desirable], examples.counts[desirable])

    def forward(self, policy: SegmentLogps, reference: SegmentLogps | None, batch: TokenBatch) -> LossOutput:
        reference = self.check_logps(policy, reference)
        num_examples, desirable = unpaired_rows(self, policy, batch)
        out = kto_loss(
            policy.sums[:num_examples, -1],
            reference.sums[:num_examples, -1],
            desirable,
            policy.sums[num_examples:, -1],
            reference.sums[num_examples:, -1],
            beta=self.beta,
            desirable_weight=self.desirable_weight,
            undesirable_weight=self.undesirable_weight,
        )
        metrics = {"kto/kl": out.kl, **class_reward_metrics(out.rewards, desirable)}
        return self.with_nll(LossOutput(loss=out.losses.mean(), per_example=out.losses, metrics=metrics), policy, batch)


class SegmentKTOLoss(KTOLoss):
    """Segment-level KTO (:mod:`hipo.losses.segment_kto`): a KTO term per segment and the whole response, each with
    its own reference point, fused by a weight module; rows as :class:`KTOLoss` (examples, then KL rows).

    Args:
        beta: inverse temperature shared by all terms.
        weights: a ``SegmentWeights`` module with S+1 terms.
        desirable_weight: w_d; undesirable_weight: w_u.
        segment_names: the S named segments.
        nll_weight: α, the weight of the desirable responses' NLL added to the loss (0: none).
    """

    weights: SegmentWeights

    def __init__(
        self,
        beta: float = 0.1,
        weights: SegmentWeights | None = None,
        desirable_weight: float = 1.0,
        undesirable_weight: float = 1.0,
        segment_names: Sequence[str] = DEFAULT_SEGMENTS,
        nll_weight: float = 0.0,
    ) -> None:
        super().__init__(beta, desirable_weight, undesirable_weight, segment_names, nll_weight)
        self.weights = checked_weights(self, weights)

    def forward(self, policy: SegmentLogps, reference: SegmentLogps | None, batch: TokenBatch) -> LossOutput:
        reference = self.check_logps(policy, reference)
        n, desirable = unpaired_rows(self, policy, batch)
        weights = self.weights()
        out = segment_kto_loss(
            policy.sums[:n],
            reference.sums[:n],
            policy.counts[:n],
            desirable,
            policy.sums[n:],
            reference.sums[n:],
            policy.counts[n:],
            weights,
            beta=self.beta,
            desirable_weight=self.desirable_weight,
            undesirable_weight=self.undesirable_weight,
        )
        metrics = {f"kto/kl/{name}": out.kl[k] for k, name in enumerate(self.term_names)}
        metrics.update(class_reward_metrics(out.rewards[:, -1], desirable))
        metrics.update(term_loss_metrics(self.term_names, weights, out.term_losses, out.term_mask))
        out_loss = LossOutput(loss=out.losses.mean() + self.weights.penalty(), per_example=out.losses, metrics=metrics)
        return self.with_nll(out_loss, policy, batch)


class SFTLoss(PreferenceLoss):
    """Supervised fine-tuning: the per-token mean NLL of the chosen responses (:func:`hipo.losses.sft.nll_loss`).

    Consumes the chosen responses alone (``responses_only``; rows 0..N-1, no rejected side, no KL rows) and no
    reference. Reports ``nll`` (the loss) and ``nll/<name>`` (the per-token mean NLL of each segment's tokens).

    Args:
        segment_names: the S named segments (for the per-segment NLL metrics).
    """

    paired = False
    responses_only = True
    needs_reference = False

    def __init__(self, segment_names: Sequence[str] = DEFAULT_SEGMENTS) -> None:
        super().__init__(segment_names)
        self.beta = 1.0  # no implicit reward: SFT never computes one (nor the held-out preference metrics)

    def chosen_logps(self, policy: SegmentLogps, batch: TokenBatch) -> SegmentLogps:
        return policy

    def forward(self, policy: SegmentLogps, reference: SegmentLogps | None, batch: TokenBatch) -> LossOutput:
        if policy.sums.dim() != 2 or policy.sums.shape[1] != len(self.term_names):
            raise ValueError(f"SFTLoss: expected [N, {len(self.term_names)}] log-probs; got {tuple(policy.sums.shape)}")
        out = nll_loss(policy.sums[:, -1], policy.counts[:, -1], nll_tokens(batch))
        metrics = {"nll": out.batch_mean}
        with torch.no_grad():
            sums, counts = policy.sums.sum(0), policy.counts.sum(0)
        for k, name in enumerate(self.segment_names):
            if int(counts[k]) > 0:
                metrics[f"nll/{name}"] = -sums[k] / counts[k]
        return LossOutput(loss=out.loss, per_example=out.per_example, metrics=metrics)


def unpaired_rows(loss: PreferenceLoss, policy: SegmentLogps, batch: TokenBatch) -> tuple[int, torch.Tensor]:
    """The number N of examples (rows 0..N-1; KL rows follow) and their ``desirable`` flags [N] bool.

    Raises:
        ValueError: a batch that is not unpaired, or whose row counts disagree.
    """
    name = type(loss).__name__
    rows = policy.sums.shape[0]
    num_kl = batch.num_kl_sequences
    num_examples = rows - num_kl
    if batch.desirable is None:
        raise ValueError(f"{name}: batch.desirable is None; KTO needs an unpaired batch")
    if num_kl < 1 or num_examples < 1:
        raise ValueError(f"{name}: need N >= 1 examples and K >= 1 KL rows; got {rows} rows with K = {num_kl}")
    if tuple(batch.desirable.shape) != (num_examples,):
        raise ValueError(
            f"{name}: batch.desirable has shape {tuple(batch.desirable.shape)}, expected ({num_examples},) "
            f"= {rows} rows - {num_kl} KL rows"
        )
    return num_examples, batch.desirable.to(device=policy.sums.device, dtype=torch.bool)


def class_reward_metrics(rewards: torch.Tensor, desirable: torch.Tensor) -> dict[str, torch.Tensor]:
    """``rewards/desirable`` and ``rewards/undesirable``: mean of [N] ``rewards`` over each class present."""
    metrics: dict[str, torch.Tensor] = {}
    if bool(desirable.any()):
        metrics["rewards/desirable"] = rewards[desirable].mean()
    if not bool(desirable.all()):
        metrics["rewards/undesirable"] = rewards[~desirable].mean()
    return metrics
