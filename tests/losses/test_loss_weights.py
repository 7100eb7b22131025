"""Segment-weight modules: values, penalties, gradients, and their behaviour under optimization.

Synthetic term losses L = (0.5, 1, 2, 4) stand for the batch-mean term losses of (Rq, Mt, Ra, whole); the objective
optimized is total = sum_k w_k L_k + penalty.
"""

from __future__ import annotations

import math

import pytest
import torch

from hipo.losses.weights import FixedWeights, SegmentWeights, SoftmaxFloorWeights, UncertaintyWeights

TERM_LOSSES = torch.tensor([0.5, 1.0, 2.0, 4.0])


def _optimize(module: SegmentWeights, steps: int, lr: float = 0.05, losses: torch.Tensor = TERM_LOSSES) -> None:
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        total = (module() * losses).sum() + module.penalty()
        total.backward()
        opt.step()


def test_fixed_weights_values_no_parameters_zero_penalty() -> None:
    w = FixedWeights([0.25, 0.25, 0.20, 0.30])
    torch.testing.assert_close(w(), torch.tensor([0.25, 0.25, 0.20, 0.30]))
    assert w.num_terms == 4
    assert list(w.parameters()) == []
    assert w.penalty().item() == 0.0
    assert "values" not in w.state_dict()  # config-defined, never checkpointed


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([], "empty"),
        ([0.5, -0.1, 0.6], r"\(1, -0.1\)"),
        ([0.5, float("nan")], "finite"),
        ([0.5, float("inf")], "finite"),
        ([0.0, 0.0], "at least one weight must be positive"),
    ],
)
def test_fixed_weights_validation(values: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FixedWeights(values)


def test_uncertainty_weights_values_penalty_and_gradient() -> None:
    """s = 0: w = exp(0) = 1, penalty 0. d total / d s_k = 1 - exp(-s_k) L_k = 1 - L_k = (0.5, 0, -1, -3)."""
    w = UncertaintyWeights(4)
    torch.testing.assert_close(w(), torch.ones(4))
    assert w.penalty().item() == 0.0
    total = (w() * TERM_LOSSES).sum() + w.penalty()
    total.backward()
    assert w.log_vars.grad is not None
    torch.testing.assert_close(w.log_vars.grad, torch.tensor([0.5, 0.0, -1.0, -3.0]))


def test_uncertainty_init_log_var() -> None:
    """init_log_var = log 4: w = exp(-log 4) = 0.25 each, penalty 4 log 4 = 5.545177."""
    w = UncertaintyWeights(4, init_log_var=math.log(4.0))
    torch.testing.assert_close(w(), torch.full((4,), 0.25))
    assert w.penalty().item() == pytest.approx(4 * math.log(4.0), abs=1e-5)


def test_uncertainty_weights_move_and_reach_equilibrium_one_over_loss() -> None:
    """A few steps move every weight with a nonzero gradient; many steps reach exp(-s_k) = 1 / L_k = (2, 1, 0.5, 0.25)
    and no weight ever reaches 0."""
    w = UncertaintyWeights(4)
    start = w().detach().clone()
    _optimize(w, steps=5)
    moved = w().detach()
    assert bool((moved[[0, 2, 3]] - start[[0, 2, 3]]).abs().gt(0.1).all())
    assert bool((moved > 0).all())
    _optimize(w, steps=1500)
    torch.testing.assert_close(w().detach(), 1.0 / TERM_LOSSES, rtol=2e-2, atol=0)


def test_uncertainty_penalty_is_what_prevents_collapse() -> None:
    """Without the +s_k term, minimizing sum_k exp(-s_k) L_k drives every weight toward 0."""
    w = UncertaintyWeights(4)
    opt = torch.optim.Adam(w.parameters(), lr=0.05)
    history = []
    for _ in range(300):
        opt.zero_grad()
        (w() * TERM_LOSSES).sum().backward()
        opt.step()
        history.append(float(w().max()))
    assert history[-1] < 0.05  # the penalized equilibrium's smallest weight is 1 / max(L) = 0.25
    assert all(b < a for a, b in zip(history, history[1:], strict=False))  # still shrinking, no equilibrium


def test_softmax_floor_weights_start_uniform_sum_to_one() -> None:
    w = SoftmaxFloorWeights(4, floor=0.05)
    torch.testing.assert_close(w(), torch.full((4,), 0.25))
    assert w.penalty().item() == 0.0


def test_softmax_floor_moves_towards_smallest_loss_but_never_below_floor() -> None:
    """sum_k w_k L_k is linear on the simplex: mass flows to L_0 = 0.5; terms 1..3 approach the floor 0.05 from
    above (never below) and term 0 approaches 1 - 3 * 0.05 = 0.85. The sum stays 1 throughout."""
    w = SoftmaxFloorWeights(4, floor=0.05)
    opt = torch.optim.Adam(w.parameters(), lr=0.1)
    for step in range(400):
        opt.zero_grad()
        (w() * TERM_LOSSES).sum().backward()
        opt.step()
        values = w().detach()
        assert bool((values >= 0.05).all()), f"below the floor at step {step}: {values}"
        assert values.sum().item() == pytest.approx(1.0, abs=1e-6)
    values = w().detach()
    assert values[0].item() == pytest.approx(0.85, abs=0.01)
    assert bool((values[1:] < 0.06).all())


def test_plain_softmax_collapses_onto_smallest_term() -> None:
    """floor = 0 is plain softmax: the documented collapse, every weight but the smallest-loss term's goes to ~0."""
    w = SoftmaxFloorWeights(4, floor=0.0)
    _optimize(w, steps=400, lr=0.1)
    values = w().detach()
    assert values[0].item() > 0.98
    assert bool((values[1:] < 0.01).all())


def test_softmax_floor_entropy_penalty_gives_interior_optimum() -> None:
    """With tau * sum p log p, the optimum is p_k proportional to exp(-(1 - K floor) L_k / tau); floor 0.05, K = 4,
    tau = 0.5: p = softmax(-0.8 L / 0.5) = softmax(-1.6 * (0.5, 1, 2, 4))."""
    w = SoftmaxFloorWeights(4, floor=0.05, entropy_coef=0.5)
    _optimize(w, steps=600, lr=0.05)
    p = torch.softmax(-1.6 * TERM_LOSSES, dim=0)
    torch.testing.assert_close(w().detach(), 0.05 + 0.8 * p, atol=2e-3, rtol=0)


def test_penalty_of_entropy_hand_value() -> None:
    """theta = 0, K = 4: p = 1/4 each, sum p log p = log(1/4) = -1.386294; tau = 0.5 -> -0.693147."""
    w = SoftmaxFloorWeights(4, floor=0.05, entropy_coef=0.5)
    assert w.penalty().item() == pytest.approx(-0.5 * math.log(4.0), abs=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_terms": 4, "floor": 0.25}, r"\[0, 0.25\)"),
        ({"num_terms": 4, "floor": -0.01}, "floor"),
        ({"num_terms": 0}, "num_terms"),
        ({"num_terms": 4, "entropy_coef": -1.0}, "entropy_coef"),
    ],
)
def test_softmax_floor_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SoftmaxFloorWeights(**kwargs)


def test_uncertainty_validation() -> None:
    with pytest.raises(ValueError, match="num_terms"):
        UncertaintyWeights(0)
    with pytest.raises(ValueError, match="init_log_var"):
        UncertaintyWeights(4, init_log_var=float("inf"))


def test_staged_weights_follow_the_step_schedule() -> None:
    from hipo.losses.weights import StagedWeights

    staged = StagedWeights([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], steps=[2, 3])
    expected = {0: [1, 0], 1: [1, 0], 2: [0, 1], 4: [0, 1], 5: [0.5, 0.5], 100: [0.5, 0.5]}
    for step, values in expected.items():
        staged.set_step(step)
        assert staged().tolist() == values, step
    assert list(staged.parameters()) == []


@pytest.mark.parametrize(
    ("stages", "steps"), [([], []), ([[1.0, 0.0], [1.0]], [1]), ([[1.0], [1.0]], []), ([[1.0], [1.0]], [0])]
)
def test_staged_weights_reject_inconsistent_schedules(stages: list, steps: list) -> None:
    from hipo.losses.weights import StagedWeights

    with pytest.raises(ValueError):
        StagedWeights(stages, steps)
