"""Every pairwise preference variant as a function of one term's log-prob sums, for a whole response or a segment.

A term is one column k of [B, K] sums: a segment of HiPO or the whole response. With policy sums s_w, s_l, reference
sums r_w, r_l, token counts n_w, n_l (per term: HiPO normalises each segment by its own count) and beta:

    rho_w = s_w - r_w,  rho_l = s_l - r_l                 (log-ratios; reference-free variants use s alone)
    phi_w = f(rho_w),   phi_l = f(rho_l),  D = phi_w - phi_l   (f: the f-divergence score below; identity = DPO)
    S_eps(z) = -(1 - eps) log sigma(z) - eps log sigma(-z)     (eps: label smoothing)

Functions of the score difference D (the f-divergence applies):

* ``sigmoid``      DPO (Rafailov et al. 2023), cDPO with eps:   S_eps(beta D)
* ``ipo``          IPO (Azar et al. 2024), sums as in Eq. 17:    (D - 1 / (2 beta))^2
* ``ipo_norm``     IPO on per-token means, TRL's ``ipo``:        (phi_w / n_w - phi_l / n_l - 1 / (2 beta))^2
* ``hinge``        SLiC (Zhao et al. 2023):                     relu(1 - beta D)
* ``robust``       rDPO (Chowdhury et al. 2024), eps = flip rate:
                   [(1 - eps)(-log sigma(beta D)) - eps(-log sigma(-beta D))] / (1 - 2 eps)
* ``exo_pair``     EXO (Ji et al. 2024, Eq. 16), 0 < eps < 1:
                   sigma(beta D)[log sigma(beta D) - log(1 - eps)] + sigma(-beta D)[log sigma(-beta D) - log eps]
* ``discopop``     DiscoPOP (Chris Lu et al. 2024, Eq. 5), z = beta D, m = sigma(z / tau):
                   (1 - m)(-log sigma(z)) + m exp(-z)
* ``sigmoid_norm`` DPO on per-token means (TRL's):               -log sigma(beta (phi_w / n_w - phi_l / n_l))

Functions of both log-ratios:

* ``nca_pair``     NCA (Chen et al. 2024):
                   -log sigma(beta rho_w) - 1/2 log sigma(-beta rho_w) - 1/2 log sigma(-beta rho_l)
* ``bco_pair``     BCO (Jung et al. 2024):   -log sigma(beta rho_w - delta) - log sigma(-(beta rho_l - delta)),
                   delta the running mean of every implicit reward beta rho seen in training so far, this batch
                   included (the paper's reward shift; the caller keeps it, :func:`bco_batch_sums`). TRL 1.16's
                   ``bco_pair`` has no shift (delta = 0): ``bco_running_mean=False`` on the loss module.
* ``sppo_hard``    SPPO, hard labels (Wu et al. 2024, Eq. 4.7 with P = 1 / 0):
                   (rho_w - 1 / (2 beta))^2 + (rho_l + 1 / (2 beta))^2
* ``apo_zero``     APO-zero (D'Oosterlinck et al. 2024, Eq. 7):  1 - sigma(beta rho_w) + sigma(beta rho_l)
* ``apo_down``     APO-down (Eq. 8):                              sigma(beta rho_w) + 1 - sigma(beta (rho_w - rho_l))

Batch-wide (the pairs of one term are sorted against each other; the caller gathers them under DDP):

* ``aot``          AOT (Melnyk et al. 2024), paired:   S_eps(beta (sort(s_w - s_l) - sort(r_w - r_l)))
* ``aot_unpaired`` AOT, unpaired:                       S_eps(beta (sort(rho_w) - sort(rho_l)))

Reference-free (no reference model is built or run):

* ``simpo``        SimPO (Meng et al. 2024):  S_eps(beta (s_w / n_w - s_l / n_l) - gamma)
* ``cpo``          CPO (Xu et al. 2024):      S_eps(beta (s_w - s_l)), plus the NLL term (``nll_weight`` 1 by default)
* ``orpo``         ORPO (Hong et al. 2024):   -beta log sigma(o_w - o_l), o = a - log(1 - exp(a)), a = s / n (log odds
                   of the per-token mean), plus the NLL term (``nll_weight`` 1 by default; beta is ORPO's lambda)

f-divergence scores (Wang et al. 2024, f-DPO), on the variants marked above: ``reverse_kl`` f(x) = x (DPO),
``forward_kl`` f(x) = 1 - exp(-x), ``js_divergence`` f(x) = log 2 + log sigma(x), ``alpha_divergence``
f(x) = (exp((alpha - 1) x) - 1) / (alpha - 1) (its exponent capped at 80, as TRL does, so exp stays finite).

Several variants combine as MPO does (a list with weights): loss = sum_v w_v l_v. Where the project's definition
deliberately differs from TRL 1.16 both are offered: ``ipo`` (the paper's sums) beside ``ipo_norm`` (TRL's ``ipo``),
``bco_pair`` with the paper's running shift beside the unshifted form. Every NLL term (CPO's, ORPO's, RPO's) is the
chosen response's per-token mean, prompt excluded; TRL 1.16's ORPOTrainer also scores the prompt's tokens.
:mod:`tests.losses.test_loss_trl_agreement` holds each variant to TRL's trainers within 1e-5.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

F_DIVERGENCES: tuple[str, ...] = ("reverse_kl", "forward_kl", "js_divergence", "alpha_divergence")


@dataclass(frozen=True)
class VariantInfo:
    """What a variant needs and allows.

    Attributes:
        paper: the paper it comes from (README's loss table).
        needs_reference: reads the reference's log-probs (False: no reference is built or run).
        length_normalised: divides each term's sums by that term's token count.
        f_divergence: accepts an f-divergence other than ``reverse_kl``.
        smoothing: (low, high, high included) range of ``label_smoothing``, or None (only 0 allowed).
        default_smoothing: its ``label_smoothing`` when none is given (EXO: the paper's 1e-3; else 0).
        batch_wide: sorts the pairs of a batch against each other (gathered across processes under DDP).
        nll_weight: the default weight of the NLL term (CPO and ORPO include it).
        needs_both_sides: a term counts only where both responses have tokens in it (log odds of an empty segment
            are not defined); other variants count a term with a token on either side.
    """

    paper: str
    needs_reference: bool = True
    length_normalised: bool = False
    f_divergence: bool = False
    smoothing: tuple[float, float, bool] | None = None
    default_smoothing: float = 0.0
    batch_wide: bool = False
    nll_weight: float = 0.0
    needs_both_sides: bool = False


_HALF_CLOSED = (0.0, 0.5, True)
VARIANT_INFO: dict[str, VariantInfo] = {
    "sigmoid": VariantInfo("DPO, Rafailov et al. 2023 (cDPO with label smoothing)", f_divergence=True,
                           smoothing=_HALF_CLOSED),
    "ipo": VariantInfo("IPO, Azar et al. 2024 (sums, the paper's Eq. 17)", f_divergence=True),
    "ipo_norm": VariantInfo("IPO on per-token means (TRL's ipo)", length_normalised=True, f_divergence=True),
    "hinge": VariantInfo("SLiC, Zhao et al. 2023", f_divergence=True),
    "robust": VariantInfo("rDPO, Chowdhury et al. 2024", f_divergence=True, smoothing=(0.0, 0.5, False)),
    "exo_pair": VariantInfo("EXO, Ji et al. 2024", f_divergence=True, smoothing=(0.0, 1.0, False),
                            default_smoothing=1e-3),
    "discopop": VariantInfo("DiscoPOP, Lu et al. 2024", f_divergence=True),
    "sigmoid_norm": VariantInfo("DPO on per-token means (TRL's sigmoid_norm)", length_normalised=True,
                                f_divergence=True),
    "nca_pair": VariantInfo("NCA, Chen et al. 2024"),
    "bco_pair": VariantInfo("BCO, Jung et al. 2024"),
    "sppo_hard": VariantInfo("SPPO (hard labels), Wu et al. 2024"),
    "apo_zero": VariantInfo("APO-zero, D'Oosterlinck et al. 2024"),
    "apo_down": VariantInfo("APO-down, D'Oosterlinck et al. 2024"),
    "aot": VariantInfo("AOT (paired), Melnyk et al. 2024", smoothing=_HALF_CLOSED, batch_wide=True),
    "aot_unpaired": VariantInfo("AOT (unpaired), Melnyk et al. 2024", smoothing=_HALF_CLOSED, batch_wide=True),
    "simpo": VariantInfo("SimPO, Meng et al. 2024", needs_reference=False, length_normalised=True,
                         smoothing=_HALF_CLOSED),
    "cpo": VariantInfo("CPO, Xu et al. 2024", needs_reference=False, smoothing=_HALF_CLOSED, nll_weight=1.0),
    "orpo": VariantInfo("ORPO, Hong et al. 2024", needs_reference=False, length_normalised=True, nll_weight=1.0,
                        needs_both_sides=True),
}  # fmt: skip
VARIANTS: tuple[str, ...] = tuple(VARIANT_INFO)


@dataclass(frozen=True)
class VariantOptions:
    """The options of a variant setting beyond beta, the variant and the label smoothing.

    Attributes:
        variant_weights: one weight per variant of a combination (None: 1.0 each).
        f_divergence: one of ``F_DIVERGENCES``.
        f_alpha: alpha of ``alpha_divergence``.
        discopop_tau: DiscoPOP's temperature tau (> 0).
        simpo_gamma: SimPO's target margin gamma.
    """

    variant_weights: tuple[float, ...] | None = None
    f_divergence: str = "reverse_kl"
    f_alpha: float = 0.5
    discopop_tau: float = 0.05
    simpo_gamma: float = 0.5


@dataclass(frozen=True)
class VariantSpec:
    """A checked variant setting: one variant or a weighted combination (MPO), and its options.

    Attributes:
        beta: inverse temperature (> 0); IPO's tau, ORPO's lambda.
        variants: the variant names, in order.
        weights: one weight per variant.
        label_smoothing: eps of the variants that take one (see :class:`VariantInfo`); None: each variant's default.
        options: f-divergence, DiscoPOP's tau, SimPO's gamma.
    """

    beta: float
    variants: tuple[str, ...]
    weights: tuple[float, ...]
    label_smoothing: float | None
    options: VariantOptions

    def __post_init__(self) -> None:
        check_spec(self)

    def smoothing(self, name: str) -> float:
        """Variant ``name``'s eps: the given ``label_smoothing``, else the variant's default."""
        return VARIANT_INFO[name].default_smoothing if self.label_smoothing is None else self.label_smoothing

    @property
    def needs_reference(self) -> bool:
        return any(VARIANT_INFO[v].needs_reference for v in self.variants)

    @property
    def batch_wide(self) -> bool:
        return any(VARIANT_INFO[v].batch_wide for v in self.variants)

    @property
    def needs_both_sides(self) -> bool:
        return any(VARIANT_INFO[v].needs_both_sides for v in self.variants)

    def check_references(self, caller: str, chosen: object | None, rejected: object | None) -> None:
        """Raises ValueError unless both reference log-probs or neither are given, and given when needed."""
        if (chosen is None) != (rejected is None):
            raise ValueError(f"{caller}: pass both reference log-probs, or neither")
        if self.needs_reference and chosen is None:
            raise ValueError(f"{caller}: variant {list(self.variants)} needs the reference's log-probs")

    @property
    def default_nll_weight(self) -> float:
        """The NLL weight the variants include (CPO, ORPO: 1), the largest over a combination."""
        return max(VARIANT_INFO[v].nll_weight for v in self.variants)


def variant_spec(
    beta: float,
    variant: str | Sequence[str] = "sigmoid",
    label_smoothing: float | None = None,
    options: VariantOptions | None = None,
) -> VariantSpec:
    """A checked :class:`VariantSpec` (``variant`` a name or a list of names).

    Raises:
        ValueError: see :func:`check_spec`.
    """
    options = options or VariantOptions()
    names = (variant,) if isinstance(variant, str) else tuple(str(v) for v in variant)
    weights = options.variant_weights if options.variant_weights is not None else (1.0,) * len(names)
    eps = None if label_smoothing is None else float(label_smoothing)
    return VariantSpec(float(beta), names, tuple(float(w) for w in weights), eps, options)


def check_spec(spec: VariantSpec) -> None:
    """Validates a variant setting.

    Raises:
        ValueError: an unknown or repeated variant, weights that do not match, beta <= 0 or not finite, a label
            smoothing outside a variant's range (or given to one without smoothing), an f-divergence on a variant
            that has none, a non-positive DiscoPOP tau, or reference-free variants mixed with ones that need it.
    """
    if not spec.variants:
        raise ValueError("variant must name at least one variant")
    for name in spec.variants:
        if name not in VARIANT_INFO:
            hint = " (SFT is loss=sft; in a combination use loss.nll_weight)" if name == "sft" else ""
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}; got {name!r}{hint}")
    if len(set(spec.variants)) != len(spec.variants):
        raise ValueError(f"variant lists a variant twice: {list(spec.variants)}")
    if len(spec.weights) != len(spec.variants) or not all(math.isfinite(w) for w in spec.weights):
        raise ValueError(f"variant_weights must be {len(spec.variants)} finite numbers; got {list(spec.weights)}")
    if not (spec.beta > 0 and spec.beta < float("inf")):
        raise ValueError(f"beta must be a positive finite number; got {spec.beta!r}")
    for name in spec.variants:
        info, eps = VARIANT_INFO[name], spec.smoothing(name)
        if info.smoothing is None:
            if eps != 0.0:
                raise ValueError(f"label_smoothing is not defined for variant {name!r}; got {eps!r}")
            continue
        low, high, high_included = info.smoothing
        inside = low <= eps <= high if high_included else low <= eps < high
        if name == "exo_pair":
            inside = low < eps < high
        if not inside:
            bracket = "]" if high_included else ")"
            opening = "(" if name == "exo_pair" else "["
            hint = " (the EXO paper uses 1e-3)" if name == "exo_pair" else ""
            raise ValueError(
                f"label_smoothing for variant {name!r} must lie in {opening}{low:g}, {high:g}{bracket}; got {eps!r}"
                f"{hint}"
            )
    options = spec.options
    if options.f_divergence not in F_DIVERGENCES:
        raise ValueError(f"f_divergence must be one of {', '.join(F_DIVERGENCES)}; got {options.f_divergence!r}")
    if options.f_divergence != "reverse_kl":
        refused = [v for v in spec.variants if not VARIANT_INFO[v].f_divergence]
        if refused:
            allowed = [v for v, info in VARIANT_INFO.items() if info.f_divergence]
            raise ValueError(
                f"f_divergence={options.f_divergence!r} applies to {', '.join(allowed)}; not to {', '.join(refused)}"
            )
    if not options.discopop_tau > 0:
        raise ValueError(f"discopop_tau must be positive; got {options.discopop_tau!r}")
    free = [v for v in spec.variants if not VARIANT_INFO[v].needs_reference]
    if free and len(free) != len(spec.variants):
        raise ValueError(f"reference-free variants ({', '.join(free)}) cannot be combined with ones that need one")


@dataclass(frozen=True)
class PairLogps:
    """One batch of pairs, K terms each (a whole response: K = 1; HiPO: S segments + whole).

    Attributes:
        chosen: [B, K] policy log-prob sums of the chosen responses.
        rejected: [B, K] the same for the rejected responses.
        ref_chosen: [B, K] reference sums of the chosen responses, or None (reference-free).
        ref_rejected: [B, K] reference sums of the rejected responses, or None.
        chosen_counts: [B, K] token counts of the chosen cells, or None (length-normalised variants then divide by 1).
        rejected_counts: [B, K] token counts of the rejected cells, or None.
    """

    chosen: torch.Tensor
    rejected: torch.Tensor
    ref_chosen: torch.Tensor | None = None
    ref_rejected: torch.Tensor | None = None
    chosen_counts: torch.Tensor | None = None
    rejected_counts: torch.Tensor | None = None

    def logratios(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(rho_w, rho_l) [B, K]: policy minus reference, or the policy sums where there is no reference."""
        if self.ref_chosen is None or self.ref_rejected is None:
            return self.chosen, self.rejected
        return self.chosen - self.ref_chosen, self.rejected - self.ref_rejected

    def lengths(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(n_w, n_l) [B, K] as floats, at least 1 (an empty cell divides by 1)."""
        ones = torch.ones_like(self.chosen)
        if self.chosen_counts is None or self.rejected_counts is None:
            return ones, ones
        return (
            self.chosen_counts.to(self.chosen.dtype).clamp(min=1.0),
            self.rejected_counts.to(self.rejected.dtype).clamp(min=1.0),
        )

    def term_mask(self, both_sides: bool = False) -> torch.Tensor:
        """[B, K] bool: the term has a token on either side (``both_sides``: on both); all True without counts."""
        if self.chosen_counts is None or self.rejected_counts is None:
            return torch.ones_like(self.chosen, dtype=torch.bool)
        chosen, rejected = self.chosen_counts > 0, self.rejected_counts > 0
        return chosen & rejected if both_sides else chosen | rejected


def f_scores(logratios: torch.Tensor, f_divergence: str, f_alpha: float) -> torch.Tensor:
    """The f-divergence score f(rho) of the module docstring, elementwise."""
    if f_divergence == "reverse_kl" or (f_divergence == "alpha_divergence" and abs(f_alpha - 1.0) < 1e-6):
        return logratios
    if f_divergence == "forward_kl":
        return 1.0 - torch.exp(-logratios)
    if f_divergence == "js_divergence":
        return math.log(2.0) + F.logsigmoid(logratios)
    if f_divergence == "alpha_divergence":
        wide = torch.promote_types(logratios.dtype, torch.float32)  # at least fp32, as TRL computes it
        exponent = torch.clamp(((f_alpha - 1.0) * logratios).to(wide), max=80.0)
        return ((torch.exp(exponent) - 1.0) / (f_alpha - 1.0)).to(logratios.dtype)
    raise ValueError(f"f_divergence must be one of {', '.join(F_DIVERGENCES)}; got {f_divergence!r}")


def smoothed_sigmoid(z: torch.Tensor, eps: float) -> torch.Tensor:
    """S_eps(z) = -(1 - eps) log sigma(z) - eps log sigma(-z)."""
    loss = -F.logsigmoid(z)
    return (1.0 - eps) * loss - eps * F.logsigmoid(-z) if eps > 0 else loss


def sorted_within(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, K] ``values`` with each column's present entries (``mask``) sorted ascending in place of each other.

    The pairs of a term are sorted among the pairs that have that term; absent entries keep their value.
    """
    out = values.clone()
    for k in range(values.shape[1]):
        rows = mask[:, k].nonzero(as_tuple=True)[0]
        if rows.numel() > 1:
            out[rows, k] = torch.sort(values[rows, k]).values
    return out


def variant_losses(pairs: PairLogps, spec: VariantSpec, bco_shift: torch.Tensor | None = None) -> torch.Tensor:
    """The weighted sum over ``spec``'s variants of each term's loss, [B, K], not masked or reduced.

    Args:
        pairs: the batch's sums and counts, K terms.
        spec: the checked variant setting.
        bco_shift: [K] ``bco_pair``'s delta per term (None: 0, TRL 1.16's unshifted form).

    Returns:
        [B, K] losses (absent terms hold finite values; the caller masks them).
    """
    total = torch.zeros_like(pairs.chosen)
    for name, weight in zip(spec.variants, spec.weights, strict=True):
        total = total + weight * _one_variant(name, pairs, spec, bco_shift)
    return total


def _one_variant(name: str, pairs: PairLogps, spec: VariantSpec, bco_shift: torch.Tensor | None) -> torch.Tensor:
    beta, eps, options = spec.beta, spec.smoothing(name), spec.options
    rho_w, rho_l = pairs.logratios()
    n_w, n_l = pairs.lengths()
    if VARIANT_INFO[name].f_divergence:
        phi_w = f_scores(rho_w, options.f_divergence, options.f_alpha)
        phi_l = f_scores(rho_l, options.f_divergence, options.f_alpha)
        delta = phi_w / n_w - phi_l / n_l if VARIANT_INFO[name].length_normalised else phi_w - phi_l
        return _delta_variant(name, delta, beta, eps, options.discopop_tau)
    if name == "nca_pair":
        return -F.logsigmoid(beta * rho_w) - 0.5 * F.logsigmoid(-beta * rho_w) - 0.5 * F.logsigmoid(-beta * rho_l)
    if name == "bco_pair":
        shift = torch.zeros(rho_w.shape[-1], dtype=rho_w.dtype, device=rho_w.device) if bco_shift is None else bco_shift
        shift = shift.to(dtype=rho_w.dtype, device=rho_w.device)
        return -F.logsigmoid(beta * rho_w - shift) - F.logsigmoid(-(beta * rho_l - shift))
    if name == "sppo_hard":
        return (rho_w - 0.5 / beta) ** 2 + (rho_l + 0.5 / beta) ** 2
    if name == "apo_zero":
        return 1.0 - torch.sigmoid(beta * rho_w) + torch.sigmoid(beta * rho_l)
    if name == "apo_down":
        return torch.sigmoid(beta * rho_w) + 1.0 - torch.sigmoid(beta * (rho_w - rho_l))
    if name in ("aot", "aot_unpaired"):
        mask = pairs.term_mask()
        if name == "aot":
            if pairs.ref_chosen is None or pairs.ref_rejected is None:
                raise ValueError("variant 'aot' needs the reference's log-probs")
            policy = sorted_within(pairs.chosen - pairs.rejected, mask)
            reference = sorted_within(pairs.ref_chosen - pairs.ref_rejected, mask)
            return smoothed_sigmoid(beta * (policy - reference), eps)
        return smoothed_sigmoid(beta * (sorted_within(rho_w, mask) - sorted_within(rho_l, mask)), eps)
    if name == "simpo":
        return smoothed_sigmoid(beta * (pairs.chosen / n_w - pairs.rejected / n_l) - options.simpo_gamma, eps)
    if name == "cpo":
        return smoothed_sigmoid(beta * (pairs.chosen - pairs.rejected), eps)
    if name == "orpo":
        return -beta * F.logsigmoid(_log_odds(pairs.chosen / n_w) - _log_odds(pairs.rejected / n_l))
    raise ValueError(f"variant must be one of {', '.join(VARIANTS)}; got {name!r}")


def _delta_variant(name: str, delta: torch.Tensor, beta: float, eps: float, tau: float) -> torch.Tensor:
    """A variant that is a function of the score difference D alone."""
    z = beta * delta
    if name in ("sigmoid", "sigmoid_norm"):
        return smoothed_sigmoid(z, eps)
    if name in ("ipo", "ipo_norm"):
        return (delta - 1.0 / (2.0 * beta)) ** 2
    if name == "hinge":
        return torch.relu(1.0 - z)
    if name == "robust":
        return ((1.0 - eps) * -F.logsigmoid(z) + eps * F.logsigmoid(-z)) / (1.0 - 2.0 * eps)
    if name == "exo_pair":
        return torch.sigmoid(z) * (F.logsigmoid(z) - math.log1p(-eps)) + torch.sigmoid(-z) * (
            F.logsigmoid(-z) - math.log(eps)
        )
    if name == "discopop":
        modulation = torch.sigmoid(z / tau)
        return -F.logsigmoid(z) * (1.0 - modulation) + torch.exp(-z) * modulation
    raise ValueError(f"{name!r} is not a function of the score difference")


def _log_odds(mean_logp: torch.Tensor) -> torch.Tensor:
    """log(p / (1 - p)) of p = exp(mean_logp); a mean of 0 (an empty cell) is read as -1e-6, which keeps the value
    and its gradient finite where the caller masks the term out."""
    safe = torch.clamp(mean_logp, max=-1e-6)
    return safe - torch.log(-torch.expm1(safe))


def bco_batch_sums(
    rewards_w: torch.Tensor, rewards_l: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum and count per term of the implicit rewards beta * rho of a batch's present terms (BCO's running mean).

    Args:
        rewards_w: [B, K] beta * rho_w; rewards_l: [B, K] beta * rho_l; mask: [B, K] bool (term present).

    Returns:
        (sums [K], counts [K]) in float64, detached: both responses of every present pair count.
    """
    weight = mask.to(torch.float64)
    sums = ((rewards_w.detach().double() + rewards_l.detach().double()) * weight).sum(0)
    return sums, 2.0 * weight.sum(0)
