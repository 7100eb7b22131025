"""hipo_loss: hand values, identities with dpo_loss, empty-segment masking, a naive reference, properties."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hipo.losses.dpo import dpo_loss
from hipo.losses.hipo import hipo_loss
from hipo.losses.variants import VARIANT_INFO, VARIANTS

L0 = math.log(2.0)  # -log sigmoid(0)
LP = 0.3132616875182228  # -log sigmoid(1)
LN = 1.3132616875182228  # -log sigmoid(-1)


def _settings(variant: str) -> dict:
    smoothing = {"sigmoid": 0.15, "robust": 0.15, "exo_pair": 1e-3, "aot": 0.1, "simpo": 0.1}
    return {"variant": variant, "label_smoothing": smoothing.get(variant, 0.0)}


def _random(b: int, terms: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, terms, generator=g, dtype=torch.float64) * 4 for _ in range(4)]


def test_hand_computed_two_pairs_with_masking() -> None:
    """beta = 1, terms (A, B, whole), weights (0.5, 0.2, 0.3).

    Pair 0: chosen log-ratios (0, 0.5, 0.5), rejected (0, -0.5, -0.5) -> h = (0, 1, 1). A has no token on either
    side (counts 0 / 0): masked. loss = 0.2 * 0.313262 + 0.3 * 0.313262 = 0.156631 (kept unrenormalized; dividing
    by the present weights 0.5 would double it to 0.313262).
    Pair 1: A is empty on the chosen side only (count 0, sums 0) and present on the rejected side: log-ratio
    -1 - (-2) = 1, so h_A = 0 - 1 = -1 (kept). h = (-1, 1, 0):
    loss = 0.5 * 1.313262 + 0.2 * 0.313262 + 0.3 * 0.693147 = 0.656631 + 0.062652 + 0.207944 = 0.927228.
    """
    t = torch.tensor
    policy_chosen = t([[-1.0, -2.0, -3.0], [0.0, -1.0, -3.0]])
    policy_rejected = t([[-1.0, -3.0, -4.0], [-1.0, -2.0, -3.0]])
    ref_chosen = t([[-1.0, -2.5, -3.5], [0.0, 0.0, 0.0]])
    ref_rejected = t([[-1.0, -2.5, -3.5], [-2.0, 0.0, 0.0]])
    chosen_counts = t([[0, 3, 9], [0, 2, 5]])
    rejected_counts = t([[0, 4, 9], [1, 2, 6]])
    weights = t([0.5, 0.2, 0.3])
    out = hipo_loss(
        policy_chosen, policy_rejected, ref_chosen, ref_rejected, weights, 1.0, chosen_counts, rejected_counts
    )
    assert out.term_mask.tolist() == [[False, True, True], [True, True, True]]
    torch.testing.assert_close(out.term_losses, t([[0.0, LP, LP], [LN, LP, L0]]))
    torch.testing.assert_close(out.losses, t([0.156631, 0.927228]), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.chosen_rewards, t([[0.0, 0.5, 0.5], [0.0, -1.0, -3.0]]))
    torch.testing.assert_close(out.rejected_rewards, t([[0.0, -0.5, -0.5], [1.0, -2.0, -3.0]]))


def test_masked_pair_loss_never_exceeds_full_weighted_sum() -> None:
    """Masking only removes terms: with non-negative term losses, masked loss <= unmasked loss, equality when the
    masked terms are the only change."""
    pc, pr, rc, rr = _random(6, 4, seed=3)
    weights = torch.tensor([0.25, 0.25, 0.2, 0.3], dtype=torch.float64)
    counts = torch.ones(6, 4, dtype=torch.long)
    empty = counts.clone()
    empty[0, 0] = empty[3, 1] = 0
    full = hipo_loss(pc, pr, rc, rr, weights, 0.2, counts, counts)
    masked = hipo_loss(pc, pr, rc, rr, weights, 0.2, empty, empty)
    expected = full.losses.clone()
    expected[0] -= 0.25 * full.term_losses[0, 0]
    expected[3] -= 0.25 * full.term_losses[3, 1]
    torch.testing.assert_close(masked.losses, expected)
    assert bool((masked.losses <= full.losses).all())


def test_policy_equal_to_reference() -> None:
    """h_k = 0 for every term: each present term costs log 2, so the loss is log 2 * (sum of weights) = log 2."""
    logps = torch.randn(3, 4)
    out = hipo_loss(logps, logps - 1, logps.clone(), logps - 1, torch.tensor([0.25, 0.25, 0.2, 0.3]), 0.2)
    torch.testing.assert_close(out.losses, torch.full((3,), math.log(2.0)))


@pytest.mark.parametrize("variant", VARIANTS)
def test_whole_only_weights_equal_dpo_on_whole_column(variant: str) -> None:
    """Weights (0, 0, 0, 1) reduce HiPO to DPO on the last column, for every variant."""
    pc, pr, rc, rr = _random(5, 4, seed=1)
    weights = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    out = hipo_loss(pc, pr, rc, rr, weights, beta=0.3, **_settings(variant))
    ref = dpo_loss(pc[:, -1], pr[:, -1], rc[:, -1], rr[:, -1], beta=0.3, **_settings(variant))
    torch.testing.assert_close(out.losses, ref.losses)
    torch.testing.assert_close(out.chosen_rewards[:, -1], ref.chosen_rewards)
    torch.testing.assert_close(out.rejected_rewards[:, -1], ref.rejected_rewards)


@pytest.mark.parametrize("variant", VARIANTS)
def test_single_term_equals_dpo(variant: str) -> None:
    """S = 0 (only the whole column, weight 1) and S = 1 with weights (1, 0) both equal DPO on that column."""
    pc, pr, rc, rr = _random(4, 2, seed=2)
    whole_only = hipo_loss(pc[:, 1:], pr[:, 1:], rc[:, 1:], rr[:, 1:], torch.ones(1), 0.5, **_settings(variant))
    torch.testing.assert_close(
        whole_only.losses, dpo_loss(pc[:, 1], pr[:, 1], rc[:, 1], rr[:, 1], 0.5, **_settings(variant)).losses
    )
    segment = hipo_loss(pc, pr, rc, rr, torch.tensor([1.0, 0.0], dtype=torch.float64), 0.5, **_settings(variant))
    torch.testing.assert_close(
        segment.losses, dpo_loss(pc[:, 0], pr[:, 0], rc[:, 0], rr[:, 0], 0.5, **_settings(variant)).losses
    )


@pytest.mark.parametrize("variant", ["sigmoid", "ipo", "hinge", "robust"])  # the others: test_loss_variants.py
def test_matches_naive_loop_reference(variant: str) -> None:
    """A per-pair, per-term Python loop with scalar formulas (no shared code) gives the same losses."""
    b, terms, beta = 5, 4, 0.4
    pc, pr, rc, rr = _random(b, terms, seed=4)
    g = torch.Generator().manual_seed(5)
    cc = torch.randint(0, 3, (b, terms), generator=g)
    rc_counts = torch.randint(0, 3, (b, terms), generator=g)
    weights = torch.tensor([0.1, 0.4, 0.2, 0.3], dtype=torch.float64)
    eps = _settings(variant)["label_smoothing"]

    def nls(x: float) -> float:  # -log sigmoid(x)
        return math.log1p(math.exp(-x)) if x > 0 else -x + math.log1p(math.exp(x))

    def term(h: float) -> float:
        if variant == "sigmoid":
            return (1 - eps) * nls(beta * h) + eps * nls(-beta * h)
        if variant == "robust":
            return ((1 - eps) * nls(beta * h) - eps * nls(-beta * h)) / (1 - 2 * eps)
        if variant == "ipo":
            return (h - 1 / (2 * beta)) ** 2
        return max(0.0, 1 - beta * h)

    expected = []
    for i in range(b):
        total = 0.0
        for k in range(terms):
            if cc[i, k] == 0 and rc_counts[i, k] == 0:
                continue
            h = (pc[i, k] - rc[i, k]).item() - (pr[i, k] - rr[i, k]).item()
            total += weights[k].item() * term(h)
        expected.append(total)
    out = hipo_loss(pc, pr, rc, rr, weights, beta, cc, rc_counts, **_settings(variant))
    torch.testing.assert_close(out.losses, torch.tensor(expected, dtype=torch.float64))


def test_gradient_reaches_weights_and_equals_term_losses() -> None:
    """d(sum_i loss_i) / d w_k = sum_i m_ik l(h_ik): the masked term losses summed over pairs."""
    pc, pr, rc, rr = _random(3, 3, seed=6)
    counts = torch.tensor([[0, 1, 1], [1, 1, 1], [1, 1, 1]])
    weights = torch.tensor([0.3, 0.3, 0.4], dtype=torch.float64, requires_grad=True)
    out = hipo_loss(pc, pr, rc, rr, weights, 0.2, counts, counts)
    out.losses.sum().backward()
    assert weights.grad is not None
    torch.testing.assert_close(weights.grad, out.term_losses.detach().sum(0))
    assert out.term_losses[0, 0].item() == 0.0


@settings(max_examples=40, deadline=None)
@given(
    shift=st.floats(-50, 50, allow_nan=False),
    row=st.integers(0, 2),
    col=st.integers(0, 3),
    side=st.sampled_from(["chosen", "rejected"]),
    variant=st.sampled_from([v for v in VARIANTS if VARIANT_INFO[v].needs_reference and v != "aot"]),
)
def test_invariant_to_shared_shift_of_policy_and_reference(shift: float, row: int, col: int, side: str, variant: str):
    """Adding the same constant to the policy and reference sums of one cell leaves every output unchanged (every
    variant of log-ratios; not paired AOT, which sorts the policy's and the reference's margins apart)."""
    pc, pr, rc, rr = _random(3, 4, seed=7)
    weights = torch.tensor([0.25, 0.25, 0.2, 0.3], dtype=torch.float64)
    base = hipo_loss(pc, pr, rc, rr, weights, 0.2, **_settings(variant))
    pol, ref = (pc.clone(), rc.clone()) if side == "chosen" else (pr.clone(), rr.clone())
    pol[row, col] += shift
    ref[row, col] += shift
    args = (pol, pr, ref, rr) if side == "chosen" else (pc, pol, rc, ref)
    shifted = hipo_loss(*args, weights, 0.2, **_settings(variant))
    torch.testing.assert_close(shifted.losses, base.losses, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(shifted.term_losses, base.term_losses, atol=1e-9, rtol=1e-9)


@settings(max_examples=25, deadline=None)
@given(w1=st.lists(st.floats(0, 2), min_size=3, max_size=3), w2=st.lists(st.floats(0, 2), min_size=3, max_size=3))
def test_linear_in_weights(w1: list[float], w2: list[float]) -> None:
    """loss(w1 + w2) = loss(w1) + loss(w2): the weights enter linearly (no hidden renormalization)."""
    pc, pr, rc, rr = _random(4, 3, seed=8)
    counts = torch.tensor([[0, 1, 1], [1, 0, 1], [1, 1, 1], [0, 0, 1]])
    a, b = torch.tensor(w1, dtype=torch.float64), torch.tensor(w2, dtype=torch.float64)
    total = hipo_loss(pc, pr, rc, rr, a + b, 0.2, counts, counts).losses
    parts = (
        hipo_loss(pc, pr, rc, rr, a, 0.2, counts, counts).losses
        + hipo_loss(pc, pr, rc, rr, b, 0.2, counts, counts).losses
    )
    torch.testing.assert_close(total, parts)


def test_shape_errors_name_the_shapes() -> None:
    z = torch.zeros(2, 4)
    with pytest.raises(ValueError, match=r"ref_rejected_seg_logps': \(2, 3\)"):
        hipo_loss(z, z, z, torch.zeros(2, 3), torch.ones(4), 0.1)
    with pytest.raises(ValueError, match=r"weights must have shape \(4,\).*\(3,\)"):
        hipo_loss(z, z, z, z, torch.ones(3), 0.1)
    with pytest.raises(ValueError, match=r"chosen_counts': \(2, 3\)"):
        hipo_loss(z, z, z, z, torch.ones(4), 0.1, torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="both chosen_counts and rejected_counts"):
        hipo_loss(z, z, z, z, torch.ones(4), 0.1, chosen_counts=torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"2-D \[B, S\+1\]"):
        hipo_loss(torch.zeros(4), torch.zeros(4), torch.zeros(4), torch.zeros(4), torch.ones(4), 0.1)
    with pytest.raises(ValueError, match="variant must be one of"):
        hipo_loss(z, z, z, z, torch.ones(4), 0.1, variant="kto")
