"""kto_loss against hand computations, and the reference point's clamping and detaching.

Shared example: beta = 0.5; examples policy (-1, -4), reference (-2, -3), desirable (True, False), so r = (1, -1);
KL pairs policy (-5, -6), reference (-6, -8): mean(1, 2) = 1.5 = z0.
  desirable:   1 - sigmoid(0.5 * (1 - 1.5))  = 1 - sigmoid(-0.25) = sigmoid(0.25)  = 0.562177
  undesirable: 1 - sigmoid(0.5 * (1.5 + 1))  = 1 - sigmoid(1.25)  = 0.222700
"""

from __future__ import annotations

import pytest
import torch

from hipo.losses.kto import kto_loss

t = torch.tensor


def _example(**kwargs):
    return kto_loss(t([-1.0, -4.0]), t([-2.0, -3.0]), t([True, False]), t([-5.0, -6.0]), t([-6.0, -8.0]), 0.5, **kwargs)


def test_hand_values() -> None:
    out = _example()
    torch.testing.assert_close(out.losses, t([0.562177, 0.222700]), atol=1e-6, rtol=0)
    torch.testing.assert_close(out.rewards, t([0.5, -0.5]))  # beta * r
    assert out.kl.item() == pytest.approx(1.5)


def test_class_weights_scale_each_class() -> None:
    """w_d = 2, w_u = 0.5: (2 * 0.562177, 0.5 * 0.222700) = (1.124353, 0.111350)."""
    out = _example(desirable_weight=2.0, undesirable_weight=0.5)
    torch.testing.assert_close(out.losses, t([1.124353, 0.111350]), atol=1e-6, rtol=0)


def test_reference_point_is_clamped_at_zero() -> None:
    """KL pair log-ratio -7 - (-5) = -2 < 0 -> z0 = 0: both losses are 1 - sigmoid(0.5 * 1) = 0.377541."""
    out = kto_loss(t([-1.0, -4.0]), t([-2.0, -3.0]), t([True, False]), t([-7.0]), t([-5.0]), 0.5)
    assert out.kl.item() == 0.0
    torch.testing.assert_close(out.losses, t([0.377541, 0.377541]), atol=1e-6, rtol=0)


def test_reference_point_is_detached_and_policy_gradient_matches_closed_form() -> None:
    """No gradient reaches the KL sequences. d/d(policy_0) = -beta sigmoid(x)(1 - sigmoid(x)) at x = -0.25:
    -0.5 * 0.437823 * 0.562177 = -0.123067; for the undesirable example (x = 1.25): +0.5 * 0.777300 * 0.222700
    = 0.086552."""
    policy = t([-1.0, -4.0], requires_grad=True)
    kl_policy = t([-5.0, -6.0], requires_grad=True)
    out = kto_loss(policy, t([-2.0, -3.0]), t([True, False]), kl_policy, t([-6.0, -8.0]), 0.5)
    assert not out.kl.requires_grad and not out.rewards.requires_grad
    out.losses.sum().backward()
    assert kl_policy.grad is None
    assert policy.grad is not None
    torch.testing.assert_close(policy.grad, t([-0.123067, 0.086552]), atol=1e-6, rtol=0)


def test_policy_equal_to_reference_costs_half_per_example() -> None:
    """r = 0 and z0 = 0: every loss is w * (1 - sigmoid(0)) = 0.5 w."""
    logps = t([-3.0, -7.0, -1.0])
    out = kto_loss(logps, logps.clone(), t([True, False, True]), t([-2.0]), t([-2.0]), 0.1, 1.0, 3.0)
    torch.testing.assert_close(out.losses, t([0.5, 1.5, 0.5]))


def test_errors() -> None:
    z2 = torch.zeros(2)
    with pytest.raises(ValueError, match="bool"):
        kto_loss(z2, z2, t([1, 0]), z2, z2, 0.1)
    with pytest.raises(ValueError, match=r"'desirable': \(3,\)"):
        kto_loss(z2, z2, t([True, False, True]), z2, z2, 0.1)
    with pytest.raises(ValueError, match=r"kl_ref_logps': \(3,\)"):
        kto_loss(z2, z2, t([True, False]), z2, torch.zeros(3), 0.1)
    with pytest.raises(ValueError, match="K = 0"):
        kto_loss(z2, z2, t([True, False]), torch.zeros(0), torch.zeros(0), 0.1)
    with pytest.raises(ValueError, match="beta"):
        kto_loss(z2, z2, t([True, False]), z2, z2, 0.0)
    with pytest.raises(ValueError, match="class weights"):
        kto_loss(z2, z2, t([True, False]), z2, z2, 0.1, desirable_weight=-1.0)
