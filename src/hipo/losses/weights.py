"""Segment-weight modules: the w_k that fuse HiPO's S+1 terms (S segments, then the whole response).

Each module's ``forward()`` returns the weights [S+1] to use for the batch and ``penalty()`` a scalar added to the
batch loss (0 unless stated). The training objective of a batch is therefore

    total = sum_k w_k * L_k + penalty,      L_k = mean over pairs of the masked term loss m_k * l(h_k).

* ``FixedWeights``: constant w (the paper's default (0.25, 0.25, 0.20, 0.30) over Rq, Mt, Ra, whole). No penalty.

* ``UncertaintyWeights`` (homoscedastic uncertainty, Kendall, Gal & Cipolla 2018): w_k = exp(-s_k) with a learned
  log-variance s_k and penalty sum_k s_k, i.e. total = sum_k exp(-s_k) L_k + s_k. Minimizing over s_k alone gives
  -exp(-s_k) L_k + 1 = 0, so the equilibrium is exp(-s_k) = 1 / L_k: a weight can never reach 0, because shrinking
  it (s_k -> +inf) is paid linearly by its own +s_k term. Terms with a small loss get a large weight (it balances the
  terms' scales; a term whose loss goes to 0 sees its weight grow). ``init_log_var = 0`` starts at w_k = 1 for every
  term, i.e. S+1 times the scale of a weight vector summing to 1; ``init_log_var = log(S+1)`` starts at 1/(S+1).

* ``SoftmaxFloorWeights``: w = floor + (1 - K floor) softmax(theta), K = S+1, so sum_k w_k = 1 always and each
  w_k >= floor by construction. Plain softmax weights (floor = 0) trained on the loss collapse: sum_k w_k L_k is
  linear in w on the simplex, so gradient descent moves all mass onto the term with the smallest loss and the other
  segments stop being trained. The floor bounds that collapse: every term keeps at least ``floor`` of the weight.
  Since the weights' sum is fixed, the loss cannot be lowered by shrinking every weight at once, so no penalty is
  needed to keep them from vanishing (penalty 0 by default). The floor still lets all but one term sit at the floor;
  ``entropy_coef = tau > 0`` adds the penalty tau * sum_k p_k log p_k (p = softmax(theta), negative entropy), which
  gives the interior optimum p_k proportional to exp(-(1 - K floor) L_k / tau) instead of a vertex.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import nn


class SegmentWeights(nn.Module, ABC):
    """Base class: ``forward() -> [num_terms]`` weights, ``penalty() -> scalar`` and the schedule hook ``set_step``.

    Attributes:
        num_terms: S+1, the number of terms (segments then the whole response).
    """

    num_terms: int

    @abstractmethod
    def forward(self) -> torch.Tensor:
        """The weights [num_terms] to use for this batch."""

    def penalty(self) -> torch.Tensor:
        """Scalar added to the batch loss (0 here)."""
        return torch.zeros((), device=self.forward().device)

    def set_step(self, step: int) -> None:
        """The current global (optimizer) step, reported before each batch; ignored here (weights without a
        schedule). Scheduled weights (:class:`StagedWeights`) override it."""


def _check_num_terms(cls: str, num_terms: int) -> None:
    if isinstance(num_terms, bool) or not isinstance(num_terms, int) or num_terms < 1:
        raise ValueError(f"{cls}: num_terms must be a positive int (S+1); got {num_terms!r}")


class FixedWeights(SegmentWeights):
    """Constant weights, e.g. the paper's (0.25, 0.25, 0.20, 0.30) over (Rq, Mt, Ra, whole).

    Args:
        values: one non-negative finite weight per term, at least one positive.
    """

    def __init__(self, values: list[float]) -> None:
        super().__init__()
        values = [float(v) for v in values]
        if not values:
            raise ValueError("FixedWeights: values must list one weight per term (S+1); got an empty list")
        bad = [(i, v) for i, v in enumerate(values) if not math.isfinite(v) or v < 0]
        if bad:
            raise ValueError(f"FixedWeights: values must be finite and >= 0; bad (index, value): {bad}")
        if not any(v > 0 for v in values):
            raise ValueError(f"FixedWeights: at least one weight must be positive; got {values}")
        self.num_terms = len(values)
        self.register_buffer("values", torch.tensor(values, dtype=torch.float32), persistent=False)

    def forward(self) -> torch.Tensor:
        """The fixed weights [num_terms]."""
        return self.get_buffer("values")


class UncertaintyWeights(SegmentWeights):
    """Learned weights w_k = exp(-s_k) with penalty sum_k s_k (Kendall, Gal & Cipolla 2018).

    Args:
        num_terms: S+1.
        init_log_var: initial s_k for every term (w_k = exp(-init_log_var)).
    """

    def __init__(self, num_terms: int, init_log_var: float = 0.0) -> None:
        super().__init__()
        _check_num_terms("UncertaintyWeights", num_terms)
        if not math.isfinite(init_log_var):
            raise ValueError(f"UncertaintyWeights: init_log_var must be finite; got {init_log_var!r}")
        self.num_terms = num_terms
        self.log_vars = nn.Parameter(torch.full((num_terms,), float(init_log_var)))

    def forward(self) -> torch.Tensor:
        """exp(-s) [num_terms]."""
        return torch.exp(-self.log_vars)

    def penalty(self) -> torch.Tensor:
        """sum_k s_k (scalar)."""
        return self.log_vars.sum()


class SoftmaxFloorWeights(SegmentWeights):
    """Learned simplex weights with a floor: w = floor + (1 - K floor) softmax(theta).

    Args:
        num_terms: K = S+1.
        floor: minimum weight of every term, 0 <= floor < 1/K.
        entropy_coef: tau >= 0 of the optional negative-entropy penalty tau * sum_k p_k log p_k.
    """

    def __init__(self, num_terms: int, floor: float = 0.05, entropy_coef: float = 0.0) -> None:
        super().__init__()
        _check_num_terms("SoftmaxFloorWeights", num_terms)
        if not 0.0 <= floor < 1.0 / num_terms:
            raise ValueError(
                f"SoftmaxFloorWeights: floor must lie in [0, 1/num_terms) = [0, {1.0 / num_terms:.4g}); got {floor!r}"
            )
        if not (entropy_coef >= 0 and math.isfinite(entropy_coef)):
            raise ValueError(f"SoftmaxFloorWeights: entropy_coef must be finite and >= 0; got {entropy_coef!r}")
        self.num_terms = num_terms
        self.floor = float(floor)
        self.entropy_coef = float(entropy_coef)
        self.logits = nn.Parameter(torch.zeros(num_terms))

    def forward(self) -> torch.Tensor:
        """floor + (1 - K floor) softmax(theta) [num_terms]; sums to 1."""
        return self.floor + (1.0 - self.num_terms * self.floor) * torch.softmax(self.logits, dim=0)

    def penalty(self) -> torch.Tensor:
        """tau * sum_k p_k log p_k (0 when ``entropy_coef`` is 0)."""
        if self.entropy_coef == 0.0:
            return torch.zeros((), device=self.logits.device)
        log_p = torch.log_softmax(self.logits, dim=0)
        return self.entropy_coef * (log_p.exp() * log_p).sum()


class StagedWeights(SegmentWeights):
    """A schedule of fixed weight vectors trained one after another (the paper's sequential runs, in one run).

    Stage ``i`` uses ``stages[i]`` from step ``sum(steps[:i])`` on; the last stage lasts until training ends. The
    training loop reports the global step through :meth:`set_step` before each batch.

    Args:
        stages: one weight vector [num_terms] per stage (each as in :class:`FixedWeights`).
        steps: optimizer steps of every stage but the last (``len(stages) - 1`` positive ints).
    """

    def __init__(self, stages: list[list[float]], steps: list[int]) -> None:
        super().__init__()
        if not stages:
            raise ValueError("StagedWeights: stages must list at least one weight vector")
        fixed = [FixedWeights(list(values)) for values in stages]
        if len({w.num_terms for w in fixed}) != 1:
            raise ValueError(
                f"StagedWeights: every stage needs the same number of terms; got {[len(s) for s in stages]}"
            )
        if len(steps) != len(stages) - 1 or any(int(n) <= 0 for n in steps):
            raise ValueError(
                f"StagedWeights: steps must give a positive length for each stage but the last "
                f"({len(stages) - 1} values); got {list(steps)}"
            )
        self.num_terms = fixed[0].num_terms
        self.register_buffer("table", torch.stack([w() for w in fixed]), persistent=False)  # [num_stages, K]
        self.boundaries = [int(b) for b in torch.tensor([int(n) for n in steps]).cumsum(0).tolist()]
        self.step = 0

    def set_step(self, step: int) -> None:
        """The current global (optimizer) step."""
        self.step = int(step)

    def stage(self) -> int:
        """Index of the stage in force at the current step."""
        return sum(self.step >= boundary for boundary in self.boundaries)

    def forward(self) -> torch.Tensor:
        """The current stage's weights [num_terms]."""
        return self.get_buffer("table")[self.stage()]
