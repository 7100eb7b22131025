"""Loss modules on hand-built log-probs and a fake TokenBatch: values, metric keys, learned weights, errors.

Shared paired example: segments ("Mt",), so columns (Mt, whole); beta = 0.5; 2 pairs; rows 0-1 chosen, 2-3 rejected.
  policy    = [[-1.5, -1], [0, -4], [-2.5, -3], [0, -3]]
  reference = [[-2,   -2], [0, -3], [-2,   -2], [0, -3]]
  counts    = [[2, 5], [0, 6], [2, 5], [0, 7]]       (pair 1 has no Mt token on either side)
Log-ratios: chosen (0.5, 1), (0, -1); rejected (-0.5, -1), (0, 0).
  pair 0: h_Mt = 1, h_whole = 2;  pair 1: h_Mt masked, h_whole = -1.
  DPO (whole): -log s(1) = 0.313262, -log s(-0.5) = 0.974077; mean 0.643669.
  Rewards (beta * log-ratio): whole margins 0.5 - (-0.5) = 1 and -0.5 - 0 = -0.5 -> mean 0.25, accuracy 1/2;
  Mt margin (pair 0 only) 0.25 - (-0.25) = 0.5 -> accuracy 1.
"""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate

from hipo.losses.modules import DPOLoss, HiPOLoss, KTOLoss
from hipo.losses.types import SegmentLogps
from hipo.losses.weights import FixedWeights, SoftmaxFloorWeights, UncertaintyWeights

t = torch.tensor
POLICY = SegmentLogps(t([[-1.5, -1.0], [0.0, -4.0], [-2.5, -3.0], [0.0, -3.0]]), t([[2, 5], [0, 6], [2, 5], [0, 7]]))
REFERENCE = SegmentLogps(t([[-2.0, -2.0], [0.0, -3.0], [-2.0, -2.0], [0.0, -3.0]]), POLICY.counts.clone())
PAIR_KEYS = {f"rewards/{kind}/{name}" for kind in ("margin", "accuracy") for name in ("Mt", "whole")} | {"nll"}


def test_dpo_module_value_and_metrics(fake_batch) -> None:
    loss = DPOLoss(beta=0.5, segment_names=["Mt"])
    assert loss.paired
    out = loss(POLICY, REFERENCE, fake_batch(4, 1))
    assert out.loss.item() == pytest.approx(0.643669, abs=1e-6)
    torch.testing.assert_close(out.per_example, t([0.313262, 0.974077]), atol=1e-6, rtol=0)
    assert set(out.metrics) == PAIR_KEYS
    assert out.metrics["rewards/margin/whole"].item() == pytest.approx(0.25)
    assert out.metrics["rewards/accuracy/whole"].item() == pytest.approx(0.5)
    assert out.metrics["rewards/margin/Mt"].item() == pytest.approx(0.5)
    assert out.metrics["rewards/accuracy/Mt"].item() == pytest.approx(1.0)


def test_dpo_module_default_segments_report_every_segment(fake_batch) -> None:
    """Default segments (Rq, Mt, Ra): metrics for all four terms; policy == reference gives log 2."""
    sums = torch.randn(6, 4)
    logps = SegmentLogps(sums, torch.ones(6, 4, dtype=torch.long))
    out = DPOLoss(beta=0.1)(logps, SegmentLogps(sums.clone(), logps.counts.clone()), fake_batch(6, 3))
    assert out.loss.item() == pytest.approx(math.log(2.0))
    assert {k.rsplit("/", 1)[1] for k in out.metrics if k.startswith("rewards/")} == {"Rq", "Mt", "Ra", "whole"}


def test_hipo_module_fixed_weights(fake_batch) -> None:
    """Weights (0.4, 0.6): pair 0 = 0.4 * -log s(0.5) + 0.6 * -log s(1) = 0.4 * 0.474077 + 0.6 * 0.313262 = 0.377588;
    pair 1 (Mt masked) = 0.6 * 0.974077 = 0.584446; mean 0.481017. term_loss/Mt = 0.474077 (pair 0 only),
    term_loss/whole = (0.313262 + 0.974077) / 2 = 0.643669."""
    loss = HiPOLoss(beta=0.5, weights=FixedWeights([0.4, 0.6]), segment_names=["Mt"])
    out = loss(POLICY, REFERENCE, fake_batch(4, 1))
    assert out.loss.item() == pytest.approx(0.481017, abs=1e-6)
    torch.testing.assert_close(out.per_example, t([0.377588, 0.584446]), atol=1e-6, rtol=0)
    expected = PAIR_KEYS | {"weight/Mt", "weight/whole", "term_loss/Mt", "term_loss/whole"}
    assert set(out.metrics) == expected
    assert out.metrics["weight/Mt"].item() == pytest.approx(0.4)
    assert out.metrics["term_loss/Mt"].item() == pytest.approx(0.474077, abs=1e-6)
    assert out.metrics["term_loss/whole"].item() == pytest.approx(0.643669, abs=1e-6)
    assert out.metrics["rewards/accuracy/Mt"].item() == pytest.approx(1.0)


def test_hipo_module_learned_weights_penalty_and_gradient(fake_batch) -> None:
    """init_log_var = log 2: w = 0.5 each, penalty 2 log 2 = 1.386294.
    loss = mean(0.5 * (0.474077 + 0.313262), 0.5 * 0.974077) + 1.386294 = 0.440354 + 1.386294 = 1.826648.
    d loss / d s_k = 1 - w_k * mean_i(m_ik l_ik): Mt 1 - 0.5 * 0.474077 / 2 = 0.881481; whole 1 - 0.5 * 0.643669
    = 0.678165."""
    loss = HiPOLoss(beta=0.5, weights=UncertaintyWeights(2, init_log_var=math.log(2.0)), segment_names=["Mt"])
    assert [name for name, _ in loss.named_parameters()] == ["weights.log_vars"]
    out = loss(POLICY, REFERENCE, fake_batch(4, 1))
    assert out.loss.item() == pytest.approx(1.826648, abs=1e-6)
    out.loss.backward()
    grad = loss.weights.log_vars.grad
    assert grad is not None
    torch.testing.assert_close(grad, t([0.881481, 0.678165]), atol=1e-5, rtol=0)


def test_hipo_learned_weights_train_through_the_module(fake_batch) -> None:
    """A few optimizer steps on the module's loss move floor-softmax weights; none drops below the floor."""
    loss = HiPOLoss(beta=0.5, weights=SoftmaxFloorWeights(2, floor=0.1), segment_names=["Mt"])
    opt = torch.optim.SGD(loss.parameters(), lr=1.0)
    start = loss.weights().detach().clone()
    for _ in range(5):
        opt.zero_grad()
        loss(POLICY, REFERENCE, fake_batch(4, 1)).loss.backward()
        opt.step()
    now = loss.weights().detach()
    assert (now - start).abs().max().item() > 0.01
    assert bool((now >= 0.1).all())


def test_hipo_term_absent_from_batch_has_weight_but_no_reward_keys(fake_batch) -> None:
    counts = POLICY.counts.clone()
    counts[:, 0] = 0
    policy = SegmentLogps(POLICY.sums, counts)
    out = HiPOLoss(beta=0.5, weights=FixedWeights([0.4, 0.6]), segment_names=["Mt"])(
        policy, SegmentLogps(REFERENCE.sums, counts.clone()), fake_batch(4, 1)
    )
    assert "rewards/accuracy/Mt" not in out.metrics and "term_loss/Mt" not in out.metrics
    assert "weight/Mt" in out.metrics and "rewards/accuracy/whole" in out.metrics


def test_implicit_rewards() -> None:
    chosen, rejected, mask = DPOLoss(beta=0.5, segment_names=["Mt"]).implicit_rewards(POLICY, REFERENCE)
    torch.testing.assert_close(chosen, t([[0.25, 0.5], [0.0, -0.5]]))
    torch.testing.assert_close(rejected, t([[-0.25, -0.5], [0.0, 0.0]]))
    assert mask.tolist() == [[True, True], [False, True]]


def test_kto_module(fake_batch) -> None:
    """beta = 0.5; examples: policy (-1, -4, -2), reference (-2, -3, -2), desirable (T, F, T): r = (1, -1, 0).
    KL rows: (-5, -6) vs (-6, -8): z0 = 1.5. Losses: sigmoid(0.25) = 0.562177, 1 - sigmoid(1.25) = 0.222700,
    1 - sigmoid(-0.75) = 0.679179; mean 0.488018. rewards/desirable = mean(0.5, 0) = 0.25, undesirable -0.5."""
    counts = torch.ones(5, 2, dtype=torch.long)
    policy = SegmentLogps(t([[0.0, -1.0], [0.0, -4.0], [0.0, -2.0], [0.0, -5.0], [0.0, -6.0]]), counts)
    reference = SegmentLogps(t([[0.0, -2.0], [0.0, -3.0], [0.0, -2.0], [0.0, -6.0], [0.0, -8.0]]), counts.clone())
    loss = KTOLoss(beta=0.5, segment_names=["Mt"])
    assert not loss.paired
    out = loss(policy, reference, fake_batch(5, 1, desirable=[True, False, True], num_kl=2))
    assert out.loss.item() == pytest.approx(0.488018, abs=1e-6)
    assert set(out.metrics) == {"kto/kl", "rewards/desirable", "rewards/undesirable", "nll"}
    assert out.metrics["kto/kl"].item() == pytest.approx(1.5)
    assert out.metrics["rewards/desirable"].item() == pytest.approx(0.25)
    assert out.metrics["rewards/undesirable"].item() == pytest.approx(-0.5)


def test_kto_module_errors(fake_batch) -> None:
    counts = torch.ones(5, 2, dtype=torch.long)
    logps = SegmentLogps(torch.zeros(5, 2), counts)
    loss = KTOLoss(beta=0.5, segment_names=["Mt"])
    with pytest.raises(ValueError, match="desirable is None"):
        loss(logps, logps, fake_batch(5, 1))
    with pytest.raises(ValueError, match=r"shape \(2,\), expected \(3,\)"):
        loss(logps, logps, fake_batch(5, 1, desirable=[True, False], num_kl=2))
    with pytest.raises(ValueError, match="K = 0"):
        loss(logps, logps, fake_batch(5, 1, desirable=[True] * 5, num_kl=0))


def test_paired_module_errors(fake_batch) -> None:
    loss = DPOLoss(beta=0.5, segment_names=["Mt"])
    batch = fake_batch(4, 1)
    with pytest.raises(ValueError, match=r"expected \[N, 2\] log-probs for terms \['Mt', 'whole'\]"):
        loss(
            SegmentLogps(torch.zeros(4, 3), torch.ones(4, 3)), SegmentLogps(torch.zeros(4, 3), torch.ones(4, 3)), batch
        )
    with pytest.raises(ValueError, match="even, positive row count; got 3"):
        loss(POLICY.rows(0, 3), REFERENCE.rows(0, 3), batch)
    stale = SegmentLogps(REFERENCE.sums, REFERENCE.counts + 1)
    with pytest.raises(ValueError, match="token counts differ"):
        loss(POLICY, stale, batch)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: HiPOLoss(weights=FixedWeights([0.5, 0.5]), segment_names=["Rq", "Mt"]), r"shape \(2,\).*3 = S\+1"),
        (lambda: HiPOLoss(weights=None, segment_names=["Mt"]), "SegmentWeights"),
        (lambda: DPOLoss(segment_names=["Mt", "Mt"]), "distinct"),
        (lambda: DPOLoss(segment_names=["whole"]), "not 'whole'"),
        (lambda: DPOLoss(segment_names="Mt"), "not the string"),
        (lambda: DPOLoss(variant="ipo", label_smoothing=0.1), "not defined for variant 'ipo'"),
        (lambda: KTOLoss(beta=0.0), "beta"),
    ],
)
def test_construction_errors(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_hydra_instantiates_hipo_with_learned_weights_as_submodule() -> None:
    cfg = {
        "_target_": "hipo.losses.modules.HiPOLoss",
        "beta": 0.2,
        "variant": "sigmoid",
        "label_smoothing": 0.0,
        "segment_names": ["Rq", "Mt", "Ra"],
        "weights": {"_target_": "hipo.losses.weights.UncertaintyWeights", "num_terms": 4, "init_log_var": 0.0},
    }
    loss = instantiate(cfg)
    assert isinstance(loss, HiPOLoss) and isinstance(loss.weights, UncertaintyWeights)
    assert sum(p.numel() for p in loss.parameters()) == 4
    torch.testing.assert_close(loss.weights(), torch.ones(4))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_modules_on_cuda_match_cpu(fake_batch) -> None:
    """Every module runs with all tensors (and weight buffers/parameters) on the GPU and matches the CPU values."""
    cuda = torch.device("cuda")
    policy = SegmentLogps(POLICY.sums.to(cuda), POLICY.counts.to(cuda))
    reference = SegmentLogps(REFERENCE.sums.to(cuda), REFERENCE.counts.to(cuda))
    for build in (
        lambda: DPOLoss(beta=0.5, segment_names=["Mt"]),
        lambda: HiPOLoss(beta=0.5, weights=FixedWeights([0.4, 0.6]), segment_names=["Mt"]),
        lambda: HiPOLoss(beta=0.5, weights=SoftmaxFloorWeights(2, floor=0.1), segment_names=["Mt"]),
    ):
        cpu_out = build()(POLICY, REFERENCE, fake_batch(4, 1))
        gpu_out = build().to(cuda)(policy, reference, fake_batch(4, 1).to(cuda))
        assert gpu_out.loss.device.type == "cuda"
        assert gpu_out.loss.item() == pytest.approx(cpu_out.loss.item(), abs=1e-6)
        assert {k: v.item() for k, v in gpu_out.metrics.items()} == pytest.approx(
            {k: v.item() for k, v in cpu_out.metrics.items()}, abs=1e-6
        )
    counts = torch.ones(5, 2, dtype=torch.long, device=cuda)
    kto = KTOLoss(beta=0.5, segment_names=["Mt"])(
        SegmentLogps(torch.randn(5, 2, device=cuda), counts),
        SegmentLogps(torch.randn(5, 2, device=cuda), counts.clone()),
        fake_batch(5, 1, desirable=[True, False, True], num_kl=2),  # desirable left on the CPU on purpose
    )
    assert kto.loss.device.type == "cuda"
