"""Every preference variant against a hand computation from its paper's equation (hipo.losses.variants).

Shared pair unless a test says otherwise: policy sums chosen s_w = -1, rejected s_l = -3; reference -2 / -2; token
counts n_w = 2, n_l = 4; so rho_w = 1, rho_l = -1, h = rho_w - rho_l = 2. With beta = 0.5: beta * rho_w = 0.5,
beta * rho_l = -0.5, beta * h = 1. Per-token means: rho_w / n_w = 0.5, rho_l / n_l = -0.25 (difference 0.75);
policy means s_w / n_w = -0.5, s_l / n_l = -0.75.
"""

from __future__ import annotations

import math

import pytest
import torch

from hipo.losses.dpo import dpo_loss
from hipo.losses.hipo import hipo_loss
from hipo.losses.variants import VARIANT_INFO, VARIANTS, VariantOptions, variant_spec


def nls(x: float) -> float:
    """-log sigmoid(x)."""
    return math.log1p(math.exp(-x))


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def shared(variant, beta: float = 0.5, eps: float = 0.0, **options) -> float:
    t = torch.tensor
    out = dpo_loss(
        t([-1.0], dtype=torch.float64),
        t([-3.0], dtype=torch.float64),
        t([-2.0], dtype=torch.float64),
        t([-2.0], dtype=torch.float64),
        beta,
        variant,
        eps,
        chosen_counts=t([2]),
        rejected_counts=t([4]),
        options=VariantOptions(**options),
    )
    return float(out.losses[0])


# (variant, beta, label smoothing, options, the hand computation)
HAND = [
    ("sigmoid", 0.5, 0.0, {}, nls(1.0)),  # -log s(1) = 0.313262
    ("sigmoid", 0.5, 0.1, {}, 0.9 * nls(1.0) + 0.1 * nls(-1.0)),  # cDPO: 0.9 * 0.313262 + 0.1 * 1.313262
    ("ipo", 0.5, 0.0, {}, (2.0 - 1.0) ** 2),  # (h - 1/(2 beta))^2 = (2 - 1)^2
    ("ipo_norm", 0.5, 0.0, {}, (0.75 - 1.0) ** 2),  # (0.5 - (-0.25) - 1)^2 = 0.0625
    ("hinge", 0.25, 0.0, {}, 0.5),  # relu(1 - 0.25 * 2)
    ("robust", 0.5, 0.1, {}, (0.9 * nls(1.0) - 0.1 * nls(-1.0)) / 0.8),  # = 0.188262
    (
        "exo_pair",
        0.5,
        1e-3,
        {},  # s(1)(log s(1) - log 0.999) + s(-1)(log s(-1) - log 0.001)
        sig(1.0) * (-nls(1.0) - math.log(0.999)) + sig(-1.0) * (-nls(-1.0) - math.log(1e-3)),
    ),
    # z = 1, m = s(1 / 0.05) = s(20): (1 - m) * 0.313262 + m * e^-1
    ("discopop", 0.5, 0.0, {}, (1 - sig(20.0)) * nls(1.0) + sig(20.0) * math.exp(-1.0)),
    ("discopop", 0.5, 0.0, {"discopop_tau": 2.0}, (1 - sig(0.5)) * nls(1.0) + sig(0.5) * math.exp(-1.0)),
    ("sigmoid_norm", 0.5, 0.0, {}, nls(0.5 * 0.75)),  # -log s(0.375)
    (
        "nca_pair",
        0.5,
        0.0,
        {},
        nls(0.5) + 0.5 * nls(-0.5) + 0.5 * nls(0.5),
    ),  # -log s(.5) - .5 log s(-.5) - .5 log s(.5)
    ("bco_pair", 0.5, 0.0, {}, nls(0.5) + nls(0.5)),  # delta = 0 (no running mean passed): -log s(.5) - log s(.5)
    ("sppo_hard", 0.25, 0.0, {}, (1.0 - 2.0) ** 2 + (-1.0 + 2.0) ** 2),  # 1/(2 beta) = 2: (1 - 2)^2 + (-1 + 2)^2
    ("apo_zero", 0.5, 0.0, {}, 1 - sig(0.5) + sig(-0.5)),  # 1 - s(0.5) + s(-0.5) = 0.755082
    ("apo_down", 0.5, 0.0, {}, sig(0.5) + 1 - sig(1.0)),  # s(0.5) + 1 - s(0.5 * 2) = 0.891400
    ("simpo", 0.5, 0.0, {"simpo_gamma": 0.5}, nls(0.5 * 0.25 - 0.5)),  # beta (-0.5 - -0.75) - gamma = -0.375
    ("simpo", 2.0, 0.0, {"simpo_gamma": 0.1}, nls(2.0 * 0.25 - 0.1)),
    ("cpo", 0.5, 0.0, {}, nls(0.5 * 2.0)),  # -log s(beta (s_w - s_l)) = -log s(1)
    # ORPO: o = a - log(1 - e^a); o_w = -0.5 - log(1 - e^-0.5), o_l = -0.75 - log(1 - e^-0.75); -beta log s(o_w - o_l)
    (
        "orpo",
        0.5,
        0.0,
        {},
        0.5 * nls((-0.5 - math.log(1 - math.exp(-0.5))) - (-0.75 - math.log(1 - math.exp(-0.75)))),
    ),
    # f-divergences on sigmoid: scores f(1), f(-1); D = f(1) - f(-1)
    ("sigmoid", 0.5, 0.0, {"f_divergence": "forward_kl"}, nls(0.5 * ((1 - math.exp(-1)) - (1 - math.exp(1))))),
    (
        "sigmoid",
        0.5,
        0.0,
        {"f_divergence": "js_divergence"},  # log 2 + log s(x): D = log s(1) - log s(-1) = 1
        nls(0.5 * 1.0),
    ),
    (
        "sigmoid",
        0.5,
        0.0,
        {"f_divergence": "alpha_divergence", "f_alpha": 0.5},  # (e^(-0.5 x) - 1) / (-0.5)
        nls(0.5 * ((math.exp(-0.5) - 1) / -0.5 - (math.exp(0.5) - 1) / -0.5)),
    ),
    ("hinge", 0.25, 0.0, {"f_divergence": "forward_kl"}, max(0.0, 1 - 0.25 * ((1 - math.exp(-1)) - (1 - math.e)))),
    # MPO-style combination: 0.8 sigmoid + 0.2 bco_pair
    (("sigmoid", "bco_pair"), 0.5, 0.0, {"variant_weights": (0.8, 0.2)}, 0.8 * nls(1.0) + 0.2 * 2 * nls(0.5)),
]


@pytest.mark.parametrize(("variant", "beta", "eps", "options", "expected"), HAND)
def test_each_variant_matches_its_equation(variant, beta: float, eps: float, options: dict, expected: float) -> None:
    assert shared(variant, beta, eps, **options) == pytest.approx(expected, abs=1e-12)


def test_every_variant_has_a_hand_computation_and_every_f_divergence_is_used() -> None:
    covered = {v for case in HAND for v in ((case[0],) if isinstance(case[0], str) else case[0])}
    assert covered | {"aot", "aot_unpaired"} == set(VARIANTS)  # AOT: test_aot_sorts_the_batch below
    assert {case[3].get("f_divergence") for case in HAND} >= {"forward_kl", "js_divergence", "alpha_divergence"}


def test_aot_sorts_the_batch() -> None:
    """Two pairs, beta = 0.5. Policy (s_w, s_l) = (-1, -3), (-2, -2.5); reference (-2, -2), (-1.5, -3).

    Paired AOT: policy margins (2, 0.5) sorted (0.5, 2); reference margins (0, 1.5) sorted (0, 1.5): delta (0.5,
    0.5), each -log s(0.25). Unsorted it would be (2, -1). Unpaired: rho_w = (1, -0.5), rho_l = (-1, 0.5); sorted
    (-0.5, 1) and (-1, 0.5): delta (0.5, 0.5) again.
    """
    t = torch.tensor
    pc, pr, rc, rr = t([-1.0, -2.0]), t([-3.0, -2.5]), t([-2.0, -1.5]), t([-2.0, -3.0])
    expected = torch.full((2,), nls(0.25))
    torch.testing.assert_close(dpo_loss(pc, pr, rc, rr, 0.5, "aot").losses, expected)
    torch.testing.assert_close(dpo_loss(pc, pr, rc, rr, 0.5, "aot_unpaired").losses, expected)
    smoothed = dpo_loss(pc, pr, rc, rr, 0.5, "aot", 0.2).losses
    torch.testing.assert_close(smoothed, torch.full((2,), 0.8 * nls(0.25) + 0.2 * nls(-0.25)))


def test_per_segment_length_normalisation_uses_each_segments_own_count() -> None:
    """HiPO with sigmoid_norm over (Rq, whole), beta = 1: Rq has chosen sum -2 over 2 tokens, rejected -2 over 4;
    the whole response -6 over 8 and -6 over 8 (reference 0). Rq: -log s(-1 - (-0.5)) = -log s(-0.5); whole:
    -log s(0) = log 2. With weights (0.5, 0.5) the pair's loss is their mean."""
    t = torch.tensor
    pc, pr, zero = t([[-2.0, -6.0]]), t([[-2.0, -6.0]]), t([[0.0, 0.0]])
    out = hipo_loss(pc, pr, zero, zero, t([0.5, 0.5]), 1.0, t([[2, 8]]), t([[4, 8]]), "sigmoid_norm")
    torch.testing.assert_close(out.term_losses[0], t([nls(-0.5), math.log(2.0)]))
    assert float(out.losses[0]) == pytest.approx(0.5 * nls(-0.5) + 0.5 * math.log(2.0))


def test_aot_per_segment_sorts_only_the_pairs_that_have_the_segment() -> None:
    """Three pairs, terms (A, whole), beta = 1, reference 0 (unpaired AOT). A is empty on both sides in pair 1.
    A's log-ratios: chosen (1, -, -1), rejected (0, -, 2) -> present pairs sorted: chosen (-1, 1), rejected (0, 2),
    deltas (-1, -1) placed at pairs 0 and 2; pair 1's A term is masked (0)."""
    t = torch.tensor
    pc = t([[1.0, 1.0], [0.0, 3.0], [-1.0, 2.0]])
    pr = t([[0.0, 0.0], [0.0, 1.0], [2.0, 2.5]])
    zero = torch.zeros(3, 2)
    counts = t([[1, 4], [0, 4], [1, 4]])
    out = hipo_loss(pc, pr, zero, zero, t([1.0, 0.0]), 1.0, counts, counts, "aot_unpaired")
    torch.testing.assert_close(out.term_losses[:, 0], t([nls(-1.0), 0.0, nls(-1.0)]))
    assert out.term_mask[:, 0].tolist() == [True, False, True]


def test_orpo_keeps_a_segment_only_where_both_sides_have_it() -> None:
    t = torch.tensor
    pc, pr = t([[-1.0, -2.0], [0.0, -2.0]]), t([[-2.0, -3.0], [-1.0, -3.0]])
    chosen, rejected = t([[2, 4], [0, 4]]), t([[2, 4], [3, 4]])  # pair 1: segment 0 empty on the chosen side
    out = hipo_loss(pc, pr, None, None, t([0.5, 0.5]), 0.1, chosen, rejected, "orpo")
    assert out.term_mask.tolist() == [[True, True], [False, True]] and torch.isfinite(out.losses).all()


def test_reference_free_variants_read_no_reference_and_others_refuse_none() -> None:
    t = torch.tensor
    free = dpo_loss(t([-1.0]), t([-3.0]), None, None, 0.5, "simpo", chosen_counts=t([2]), rejected_counts=t([4]))
    assert float(free.losses[0]) == pytest.approx(nls(0.5 * 0.25 - 0.5))
    assert float(free.chosen_rewards[0]) == pytest.approx(-0.5)  # beta * log pi
    # a reference passed to a reference-free variant is not read
    ignored = dpo_loss(
        t([-1.0]), t([-3.0]), t([9.0]), t([-9.0]), 0.5, "simpo", chosen_counts=t([2]), rejected_counts=t([4])
    )
    assert float(ignored.losses[0]) == float(free.losses[0])
    with pytest.raises(ValueError, match="needs the reference's log-probs"):
        dpo_loss(t([-1.0]), t([-3.0]), None, None, 0.5, "sigmoid")


def test_gradients_are_finite_for_every_variant() -> None:
    for name in VARIANTS:
        eps = 1e-3 if name == "exo_pair" else 0.0
        pc = torch.tensor([-4.0, -6.0, -2.0], requires_grad=True)
        pr = torch.tensor([-5.0, -3.0, -7.0], requires_grad=True)
        reference = (torch.tensor([-4.5, -5.0, -3.0]), torch.tensor([-4.0, -4.0, -6.0]))
        out = dpo_loss(pc, pr, *reference, 0.3, name, eps, chosen_counts=torch.tensor([3, 4, 2]),
                       rejected_counts=torch.tensor([5, 2, 6]))  # fmt: skip
        out.losses.sum().backward()
        assert pc.grad is not None and torch.isfinite(pc.grad).all() and pc.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    ("variant", "eps", "options", "message"),
    [
        ("sft", 0.0, {}, "SFT is loss=sft"),
        ("exo_pair", 0.0, {}, r"must lie in \(0, 1\).*1e-3"),
        ("nca_pair", 0.1, {}, "not defined for variant 'nca_pair'"),
        ("nca_pair", 0.0, {"f_divergence": "forward_kl"}, "applies to"),
        ("sigmoid", 0.0, {"f_divergence": "kl"}, "f_divergence must be one of"),
        (["sigmoid", "simpo"], 0.0, {}, "cannot be combined"),
        (["sigmoid", "sigmoid"], 0.0, {}, "twice"),
        (["sigmoid", "hinge"], 0.0, {"variant_weights": (1.0,)}, "variant_weights must be 2"),
        ("discopop", 0.0, {"discopop_tau": 0.0}, "discopop_tau must be positive"),
    ],
)
def test_invalid_settings_say_what_is_wrong(variant, eps: float, options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        variant_spec(0.1, variant, eps, VariantOptions(**options))


def test_variant_info_is_consistent() -> None:
    free = [v for v, info in VARIANT_INFO.items() if not info.needs_reference]
    assert free == ["simpo", "cpo", "orpo"]
    assert {v for v, info in VARIANT_INFO.items() if info.nll_weight} == {"cpo", "orpo"}
    assert variant_spec(0.1, "orpo").default_nll_weight == 1.0 and variant_spec(0.1, "sigmoid").default_nll_weight == 0


def test_unset_label_smoothing_is_each_variants_default() -> None:
    """``label_smoothing=None``: EXO takes the paper's 1e-3, the rest 0; so ``[exo_pair, hinge]`` combines (one
    shared eps could not: hinge takes none, EXO needs one)."""
    spec = variant_spec(0.5, ["exo_pair", "hinge"], None, VariantOptions(variant_weights=(0.5, 0.5)))
    assert spec.smoothing("exo_pair") == 1e-3 and spec.smoothing("hinge") == 0.0
    assert shared("exo_pair", 0.5, None) == pytest.approx(shared("exo_pair", 0.5, 1e-3), abs=1e-15)
    assert shared("sigmoid", 0.5, None) == pytest.approx(nls(1.0), abs=1e-15)
    combined = 0.5 * shared("exo_pair", 0.5, 1e-3) + 0.5 * shared("hinge", 0.5, 0.0)
    assert shared(("exo_pair", "hinge"), 0.5, None, variant_weights=(0.5, 0.5)) == pytest.approx(combined, abs=1e-12)


def test_ld_alpha_scores_shared_plus_alpha_times_tail_per_segment() -> None:
    """HiPO with ``ld_alpha``: each term's sums become ``sums - (1 - alpha) * tails`` on the policy and the
    reference, per segment (the tails are the pooling's); the NLL term keeps the plain sums; no tails is an error."""
    from hipo.losses.modules import HiPOLoss
    from hipo.losses.types import SegmentLogps
    from hipo.losses.weights import FixedWeights

    counts = torch.tensor([[2, 3], [1, 3]])
    policy = SegmentLogps(torch.tensor([[-3.0, -6.0], [-1.0, -5.0]]), counts, torch.tensor([[-2.0, 0.0], [0.0, 0.0]]))
    reference = SegmentLogps(torch.tensor([[-2.5, -6.5], [-1.5, -4.0]]), counts, torch.tensor([[-1.0, 0.0], [0, 0]]))
    weights = FixedWeights([0.4, 0.6])
    ld = HiPOLoss(beta=0.5, weights=weights, segment_names=["Mt"], ld_alpha=0.25, nll_weight=0.5)
    got = ld(policy, reference, None).loss  # type: ignore[arg-type]  # no batch: the NLL reads the counts
    # by hand: Mt chosen -3 - 0.75 * -2 = -1.5, reference -2.5 - 0.75 * -1 = -1.75; rejected Mt -1 / -1.5 (no tail);
    # whole terms have no tail. Mt: h = (-1.5 + 1.75) - (-1 + 1.5) = -0.25; whole: (-6 + 6.5) - (-5 + 4) = 1.5
    by_hand = 0.4 * math.log1p(math.exp(0.5 * 0.25)) + 0.6 * math.log1p(math.exp(-0.5 * 1.5))
    nll = 6.0 / 3  # the chosen whole sum, plain: -(-6) over 3 tokens
    assert float(got) == pytest.approx(by_hand + 0.5 * nll, abs=1e-6)
    plain = HiPOLoss(beta=0.5, weights=weights, segment_names=["Mt"], nll_weight=0.5)(policy, reference, None)  # type: ignore[arg-type]
    assert float(plain.loss) != pytest.approx(float(got), abs=1e-3)
    with pytest.raises(ValueError, match="paired_tails=True"):
        ld(SegmentLogps(policy.sums, counts), reference, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"ld_alpha must lie in \[0, 1\]"):
        HiPOLoss(beta=0.5, weights=weights, segment_names=["Mt"], ld_alpha=1.5)


def test_the_readme_loss_table_lists_every_variant_with_its_reference_need() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme[readme.index("| `loss.variant` | paper |") :].split("\n\n")[0].splitlines()[2:]
    rows = {line.split("`")[1]: line for line in table}
    assert len(rows) == len(table) == len(VARIANTS)
    for name, info in VARIANT_INFO.items():
        assert name in rows, f"README's loss table has no row for {name}"
        cells = [cell.strip() for cell in rows[name].split("|")]
        assert cells[2] == info.paper and cells[3] == ("yes" if info.needs_reference else "**no**"), name
