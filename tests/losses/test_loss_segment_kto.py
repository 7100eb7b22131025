"""Segment-level KTO against hand computations, and whole-only weights against whole-response KTO."""

from __future__ import annotations

import math

import pytest
import torch

from hipo.losses.kto import kto_loss
from hipo.losses.modules import KTOLoss, SegmentKTOLoss
from hipo.losses.segment_kto import segment_kto_loss
from hipo.losses.types import SegmentLogps
from hipo.losses.weights import FixedWeights


def t(values: object) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_hand_computed_terms_reference_points_and_masks() -> None:
    """Two examples over (Mt, whole), two KL rows, beta 0.5, w_d 1, w_u 2, weights (0.3, 0.7).

    r = policy - reference = [[1.0, 1.0], [-0.5, -1.0]]; example 1 has no Mt token (its Mt term is absent).
    KL log-ratios [[0.4, 0.3], [0.2, 0.9]]; KL row 1 has no Mt token, so z0_Mt = 0.4 (row 0 only) and
    z0_whole = (0.3 + 0.9) / 2 = 0.6.
    Example 0 (desirable): 1 - sigmoid(0.5 (1.0 - 0.4)) for Mt, 1 - sigmoid(0.5 (1.0 - 0.6)) for whole.
    Example 1 (undesirable): Mt absent; whole 2 (1 - sigmoid(0.5 (0.6 - (-1.0)))).
    """
    out = segment_kto_loss(
        policy_logps=t([[1.0, 2.0], [0.5, -1.0]]),
        ref_logps=t([[0.0, 1.0], [1.0, 0.0]]),
        counts=torch.tensor([[3, 5], [0, 4]]),
        desirable=torch.tensor([True, False]),
        kl_policy_logps=t([[0.4, 0.3], [0.2, 0.9]]),
        kl_ref_logps=t([[0.0, 0.0], [0.0, 0.0]]),
        kl_counts=torch.tensor([[2, 3], [0, 3]]),
        weights=t([0.3, 0.7]),
        beta=0.5,
        desirable_weight=1.0,
        undesirable_weight=2.0,
    )
    mt_0, whole_0 = 1 - sigmoid(0.3), 1 - sigmoid(0.2)
    whole_1 = 2 * (1 - sigmoid(0.8))
    assert out.kl.tolist() == pytest.approx([0.4, 0.6])
    assert out.term_losses.flatten().tolist() == pytest.approx([mt_0, whole_0, 0.0, whole_1])
    assert out.losses.tolist() == pytest.approx([0.3 * mt_0 + 0.7 * whole_0, 0.7 * whole_1])
    assert out.term_mask.tolist() == [[True, True], [False, True]]
    assert out.rewards.flatten().tolist() == pytest.approx([0.5, 0.5, -0.25, -0.5])


def test_reference_points_are_clamped_at_zero_and_zero_without_a_present_kl_row() -> None:
    out = segment_kto_loss(
        t([[1.0, 1.0]]),
        t([[0.0, 0.0]]),
        torch.tensor([[1, 1]]),
        torch.tensor([True]),
        kl_policy_logps=t([[0.5, -2.0]]),
        kl_ref_logps=t([[0.0, 0.0]]),
        kl_counts=torch.tensor([[0, 4]]),  # no KL row has an Mt token; whole log-ratio is negative
        weights=t([0.5, 0.5]),
        beta=1.0,
    )
    assert out.kl.tolist() == [0.0, 0.0]
    assert out.losses.item() == pytest.approx(1 - sigmoid(1.0))


def test_whole_only_weights_are_whole_response_kto() -> None:
    generator = torch.Generator().manual_seed(3)
    policy, ref = torch.randn(6, 4, generator=generator), torch.randn(6, 4, generator=generator)
    kl_policy, kl_ref = torch.randn(3, 4, generator=generator), torch.randn(3, 4, generator=generator)
    desirable = torch.tensor([True, False, True, True, False, False])
    counts = torch.randint(0, 3, (6, 4), generator=generator)
    counts[:, -1] = 7  # the whole response always has tokens
    kl_counts = torch.full((3, 4), 5)
    segmented = segment_kto_loss(
        policy, ref, counts, desirable, kl_policy, kl_ref, kl_counts, torch.tensor([0.0, 0.0, 0.0, 1.0]), beta=0.3
    )
    whole = kto_loss(policy[:, -1], ref[:, -1], desirable, kl_policy[:, -1], kl_ref[:, -1], beta=0.3)
    assert torch.allclose(segmented.losses, whole.losses)
    assert segmented.kl[-1].item() == pytest.approx(whole.kl.item())


def test_module_with_whole_only_weights_equals_the_kto_module(fake_batch) -> None:
    generator = torch.Generator().manual_seed(0)
    counts = torch.randint(1, 4, (7, 4), generator=generator)
    policy = SegmentLogps(torch.randn(7, 4, generator=generator), counts)
    reference = SegmentLogps(torch.randn(7, 4, generator=generator), counts.clone())
    batch = fake_batch(7, 3, desirable=[True, False, True, False, True], num_kl=2)
    segment_level = SegmentKTOLoss(beta=0.2, weights=FixedWeights([0.0, 0.0, 0.0, 1.0]))(policy, reference, batch)
    whole = KTOLoss(beta=0.2)(policy, reference, batch)
    assert segment_level.loss.item() == pytest.approx(whole.loss.item())
    assert segment_level.metrics["kto/kl/whole"].item() == pytest.approx(whole.metrics["kto/kl"].item())
    assert segment_level.metrics["rewards/desirable"].item() == pytest.approx(whole.metrics["rewards/desirable"].item())
    assert {"weight/Mt", "term_loss/Rq", "kto/kl/Ra"} <= set(segment_level.metrics)


def test_an_absent_segment_gets_no_gradient() -> None:
    policy = torch.zeros(2, 3, requires_grad=True)
    out = segment_kto_loss(
        policy,
        torch.zeros(2, 3),
        torch.tensor([[0, 2, 4], [3, 0, 4]]),
        torch.tensor([True, False]),
        torch.zeros(1, 3),
        torch.zeros(1, 3),
        torch.ones(1, 3, dtype=torch.long),
        torch.tensor([0.25, 0.25, 0.5]),
        beta=0.1,
    )
    out.losses.sum().backward()
    assert policy.grad is not None
    assert policy.grad[0, 0] == 0 and policy.grad[1, 1] == 0
    assert policy.grad[0, 1] < 0 and policy.grad[1, 0] > 0  # desirable pushed up, undesirable down


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SegmentKTOLoss(beta=0.1, weights=None), "weights must be a hipo.losses.weights.SegmentWeights"),
        (lambda: SegmentKTOLoss(beta=0.1, weights=FixedWeights([0.5, 0.5])), r"shape \(2,\) but the terms"),
        (lambda: SegmentKTOLoss(beta=0.0, weights=FixedWeights([0.25] * 4)), "beta must be positive"),
    ],
)
def test_bad_settings_are_refused(build, message: str) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=message):
        build()


def test_inconsistent_shapes_and_no_kl_rows_are_refused() -> None:
    ok = {"desirable": torch.tensor([True, False]), "weights": torch.ones(3)}
    with pytest.raises(ValueError, match=r"inconsistent shapes .*'counts': \(2, 2\)"):
        segment_kto_loss(
            torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 2), ok["desirable"],
            torch.zeros(1, 3), torch.zeros(1, 3), torch.ones(1, 3), ok["weights"], beta=0.1,
        )  # fmt: skip
    with pytest.raises(ValueError, match="K = 0"):
        segment_kto_loss(
            torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 3), ok["desirable"],
            torch.zeros(0, 3), torch.zeros(0, 3), torch.ones(0, 3), ok["weights"], beta=0.1,
        )  # fmt: skip
