"""dpo_loss and the per-term function against hand computations.

Shared example (one pair): beta = 0.5, policy log-probs chosen -1, rejected -3, reference -2 / -2, so
h = (-1 - -2) - (-3 - -2) = 1 - (-1) = 2 and beta * h = 1. Useful constants:
  -log sigmoid(1)  = log(1 + e^-1) = 0.313262
  -log sigmoid(-1) = log(1 + e)    = 1.313262
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hipo.losses.dpo import dpo_loss
from hipo.losses.variants import VARIANT_INFO, VARIANTS

LOSS_POS = 0.3132616875182228  # -log sigmoid(1)
LOSS_NEG = 1.3132616875182228  # -log sigmoid(-1)


def _example(**kwargs):
    t = torch.tensor
    return dpo_loss(t([-1.0]), t([-3.0]), t([-2.0]), t([-2.0]), beta=0.5, **kwargs)


def test_sigmoid_hand_value_and_rewards() -> None:
    """h = 2, beta h = 1: loss = -log sigmoid(1) = 0.3133; rewards 0.5 * (-1 + 2) = 0.5 and 0.5 * (-3 + 2) = -0.5."""
    out = _example()
    assert out.losses.item() == pytest.approx(LOSS_POS, abs=1e-6)
    assert out.chosen_rewards.item() == pytest.approx(0.5)
    assert out.rejected_rewards.item() == pytest.approx(-0.5)


def test_conservative_dpo_label_smoothing() -> None:
    """eps = 0.1: 0.9 * 0.313262 + 0.1 * 1.313262 = 0.281935 + 0.131326 = 0.413262."""
    assert _example(label_smoothing=0.1).losses.item() == pytest.approx(0.413262, abs=1e-6)


def test_robust_dpo() -> None:
    """eps = 0.1: (0.9 * 0.313262 - 0.1 * 1.313262) / (1 - 0.2) = (0.281935 - 0.131326) / 0.8 = 0.188262."""
    assert _example(variant="robust", label_smoothing=0.1).losses.item() == pytest.approx(0.188262, abs=1e-6)


def test_ipo() -> None:
    """1 / (2 beta) = 1, h = 2: (2 - 1)^2 = 1. Swapping chosen and rejected gives h = -2: (-2 - 1)^2 = 9."""
    assert _example(variant="ipo").losses.item() == pytest.approx(1.0)
    t = torch.tensor
    swapped = dpo_loss(t([-3.0]), t([-1.0]), t([-2.0]), t([-2.0]), beta=0.5, variant="ipo")
    assert swapped.losses.item() == pytest.approx(9.0)


def test_hinge() -> None:
    """beta h = 1: relu(1 - 1) = 0. With ref_rejected = -2.5: h = (-1 + 2) - (-3 + 2.5) = 1.5, relu(1 - 0.75) = 0.25."""
    assert _example(variant="hinge").losses.item() == pytest.approx(0.0)
    t = torch.tensor
    out = dpo_loss(t([-1.0]), t([-3.0]), t([-2.0]), t([-2.5]), beta=0.5, variant="hinge")
    assert out.losses.item() == pytest.approx(0.25)


@pytest.mark.parametrize("variant", ["sigmoid", "robust"])
def test_policy_equal_to_reference_gives_log_2(variant: str) -> None:
    """At initialization h = 0 and -log sigmoid(0) = log 2 for every pair (robust with eps = 0 too)."""
    logps = torch.tensor([-5.0, -12.0, -0.5])
    rejected = torch.tensor([-7.0, -3.0, -9.0])
    out = dpo_loss(logps, rejected, logps.clone(), rejected.clone(), beta=0.1, variant=variant)
    torch.testing.assert_close(out.losses, torch.full((3,), math.log(2.0)))
    torch.testing.assert_close(out.chosen_rewards, torch.zeros(3))


def test_gradient_matches_closed_form_and_rewards_are_detached() -> None:
    """d/d(policy_chosen) of -log sigmoid(beta h) = -beta sigmoid(-beta h) = -0.5 * sigmoid(-1) = -0.134471."""
    chosen = torch.tensor([-1.0], requires_grad=True)
    rejected = torch.tensor([-3.0], requires_grad=True)
    out = dpo_loss(chosen, rejected, torch.tensor([-2.0]), torch.tensor([-2.0]), beta=0.5)
    assert not out.chosen_rewards.requires_grad and not out.rejected_rewards.requires_grad
    out.losses.sum().backward()
    expected = -0.5 / (1.0 + math.e)
    assert chosen.grad is not None and rejected.grad is not None
    assert chosen.grad.item() == pytest.approx(expected, abs=1e-6)
    assert rejected.grad.item() == pytest.approx(-expected, abs=1e-6)


@settings(max_examples=50, deadline=None)
@given(
    h=st.floats(-30, 30, allow_nan=False),
    beta=st.floats(0.01, 2.0),
    eps=st.floats(0.0, 0.45),
)
def test_robust_is_unbiased_under_label_flips(h: float, beta: float, eps: float) -> None:
    """rDPO's defining property: (1 - eps) l(h) + eps l(-h) = -log sigmoid(beta h) (expectation over flips)."""
    x = torch.tensor([h, -h], dtype=torch.float64)
    zeros = torch.zeros(2, dtype=torch.float64)
    rob = dpo_loss(x, zeros, zeros, zeros, beta, "robust", eps).losses
    clean = -torch.nn.functional.logsigmoid(torch.tensor(beta * h, dtype=torch.float64))
    torch.testing.assert_close((1 - eps) * rob[0] + eps * rob[1], clean, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("variant", [v for v in VARIANTS if not VARIANT_INFO[v].batch_wide])
def test_batch_is_elementwise(variant: str) -> None:
    """A batch equals the pairs computed one by one (every variant but the batch-wide AOT)."""
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (torch.randn(5, generator=g) * 3 - 4 for _ in range(4))
    eps = {"sigmoid": 0.2, "robust": 0.2, "exo_pair": 1e-3}.get(variant, 0.0)
    batch = dpo_loss(pc, pr, rc, rr, beta=0.3, variant=variant, label_smoothing=eps).losses
    single = torch.stack(
        [
            dpo_loss(pc[i : i + 1], pr[i : i + 1], rc[i : i + 1], rr[i : i + 1], 0.3, variant, eps).losses[0]
            for i in range(5)
        ]
    )
    torch.testing.assert_close(batch, single)


def test_shape_mismatch_raises_with_shapes() -> None:
    with pytest.raises(ValueError, match=r"ref_rejected_logps.*\(3,\)"):
        dpo_loss(torch.zeros(2), torch.zeros(2), torch.zeros(2), torch.zeros(3), beta=0.1)
    with pytest.raises(ValueError, match="1-D"):
        dpo_loss(torch.zeros(2, 1), torch.zeros(2, 1), torch.zeros(2, 1), torch.zeros(2, 1), beta=0.1)


@pytest.mark.parametrize(
    ("variant", "beta", "eps", "message"),
    [
        ("kto", 0.1, 0.0, "variant must be one of"),
        ("sigmoid", 0.0, 0.0, "beta must be a positive"),
        ("sigmoid", float("nan"), 0.0, "beta must be a positive"),
        ("sigmoid", 0.1, 0.6, r"\[0, 0.5\]"),
        ("robust", 0.1, 0.5, r"\[0, 0.5\)"),
        ("ipo", 0.1, 0.1, "not defined for variant 'ipo'"),
        ("hinge", 0.1, 0.1, "not defined for variant 'hinge'"),
    ],
)
def test_invalid_settings_raise(variant: str, beta: float, eps: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dpo_loss(torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(1), beta, variant, eps)
