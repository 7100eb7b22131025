"""SFT and the NLL term of preference losses (RPO), against hand computations and an independent cross-entropy."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hipo.losses.modules import DPOLoss, HiPOLoss, KTOLoss, SegmentKTOLoss, SFTLoss
from hipo.losses.sft import nll_loss
from hipo.losses.types import SegmentLogps
from hipo.losses.weights import FixedWeights


def _logsig(z: float) -> float:
    return -math.log1p(math.exp(-z))


def test_nll_is_the_token_mean_over_the_batch() -> None:
    """Sums −2 (2 tokens) and −6 (3 tokens): 8 / 5 = 1.6 over the batch; per example 1.0 and 2.0."""
    out = nll_loss(torch.tensor([-2.0, -6.0]), torch.tensor([2, 3]))
    assert out.loss.item() == pytest.approx(1.6)
    assert out.per_example.tolist() == pytest.approx([1.0, 2.0])


def test_nll_of_a_response_without_tokens_is_zero_not_nan() -> None:
    out = nll_loss(torch.tensor([0.0, -3.0]), torch.tensor([0, 3]))
    assert out.per_example.tolist() == pytest.approx([0.0, 1.0]) and out.loss.item() == pytest.approx(1.0)


def test_nll_over_processes_divides_by_their_mean_token_count() -> None:
    """Rank 0: sums −2, −6 over 5 tokens; rank 1: sum −3 over 1 token. One process with all three: 11 / 6. Each
    rank divides by the mean count 3 and DDP averages: (8 / 3 + 3 / 3) / 2 = 11 / 6; the metric stays the batch's
    own mean (8 / 5)."""
    rank0 = nll_loss(torch.tensor([-2.0, -6.0]), torch.tensor([2, 3]), num_tokens=3.0)
    rank1 = nll_loss(torch.tensor([-3.0]), torch.tensor([1]), num_tokens=3.0)
    assert ((rank0.loss + rank1.loss) / 2).item() == pytest.approx(11 / 6)
    assert rank0.batch_mean.item() == pytest.approx(1.6)
    with pytest.raises(ValueError, match="num_tokens"):
        nll_loss(torch.tensor([-3.0]), torch.tensor([1]), num_tokens=0.0)


def test_nll_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="shape"):
        nll_loss(torch.zeros(2, 2), torch.zeros(2, 2))


def test_sft_loss_and_its_segment_metrics_by_hand(fake_batch) -> None:
    """Columns (Rq, Mt, whole). Response 0: Rq −1 (1 token), Mt −3 (2), whole −4.5 (4: one outside token −0.5);
    response 1: Rq −2 (2), Mt −1 (1), whole −3 (3). Loss = 7.5 / 7; nll/Rq = 3 / 3 = 1; nll/Mt = 4 / 3."""
    sums = torch.tensor([[-1.0, -3.0, -4.5], [-2.0, -1.0, -3.0]], requires_grad=True)
    counts = torch.tensor([[1, 2, 4], [2, 1, 3]])
    loss = SFTLoss(segment_names=["Rq", "Mt"])
    out = loss(SegmentLogps(sums, counts), None, fake_batch(2, 2))
    assert out.loss.item() == pytest.approx(7.5 / 7)
    assert out.metrics["nll"].item() == pytest.approx(7.5 / 7)
    assert out.metrics["nll/Rq"].item() == pytest.approx(1.0)
    assert out.metrics["nll/Mt"].item() == pytest.approx(4 / 3)
    out.loss.backward()
    assert sums.grad is not None and sums.grad[:, -1].tolist() == pytest.approx([-1 / 7, -1 / 7])
    assert sums.grad[:, :2].abs().sum().item() == 0.0  # only the whole column enters the loss


def test_sft_needs_no_reference_and_reads_single_responses() -> None:
    assert SFTLoss.needs_reference is False and SFTLoss.responses_only is True and SFTLoss.paired is False
    assert DPOLoss.needs_reference and not DPOLoss.responses_only


def _pair_logps(counts_whole: int = 4) -> tuple[SegmentLogps, SegmentLogps]:
    """One pair, columns (Mt, whole): policy chosen −1 (Mt −0.5), rejected −3 (Mt −2); reference −2 for both sides,
    Mt −1. ``counts_whole`` tokens in each response, 2 of them in Mt."""
    policy = SegmentLogps(torch.tensor([[-0.5, -1.0], [-2.0, -3.0]]), torch.tensor([[2, counts_whole]] * 2))
    reference = SegmentLogps(torch.tensor([[-1.0, -2.0], [-1.0, -2.0]]), torch.tensor([[2, counts_whole]] * 2))
    return policy, reference


def test_dpo_with_nll_adds_alpha_times_the_chosen_nll_by_hand(fake_batch) -> None:
    """β 0.5: logit = 0.5 · ((−1 + 2) − (−3 + 2)) = 1, DPO = −log σ(1) = 0.313262; chosen NLL = 1 / 4 = 0.25;
    α = 2: 0.313262 + 0.5 = 0.813262. With α = 0 the loss is DPO's alone but ``nll`` is still reported."""
    policy, reference = _pair_logps()
    plain = DPOLoss(beta=0.5, segment_names=["Mt"])(policy, reference, fake_batch(2, 1))
    rpo = DPOLoss(beta=0.5, segment_names=["Mt"], nll_weight=2.0)(policy, reference, fake_batch(2, 1))
    assert plain.loss.item() == pytest.approx(-_logsig(1.0)) == pytest.approx(0.313262, abs=1e-6)
    assert rpo.loss.item() == pytest.approx(0.313262 + 0.5, abs=1e-6)
    assert plain.metrics["nll"].item() == rpo.metrics["nll"].item() == pytest.approx(0.25)
    assert torch.equal(plain.per_example, rpo.per_example)  # the preference term alone


def test_hipo_with_nll_adds_the_same_term(fake_batch) -> None:
    """Weights (0.4 Mt, 0.6 whole), β 0.5: Mt logit 0.5 · ((−0.5 + 1) − (−2 + 1)) = 0.75, whole logit 1;
    HiPO = −0.4 log σ(0.75) − 0.6 log σ(1); α = 0.5 adds 0.5 · 0.25."""
    policy, reference = _pair_logps()
    loss = HiPOLoss(beta=0.5, weights=FixedWeights([0.4, 0.6]), segment_names=["Mt"], nll_weight=0.5)
    out = loss(policy, reference, fake_batch(2, 1))
    expected = -0.4 * _logsig(0.75) - 0.6 * _logsig(1.0) + 0.5 * 0.25
    assert out.loss.item() == pytest.approx(expected, abs=1e-6)


def test_kto_nll_reads_the_desirable_examples_only(fake_batch) -> None:
    """Rows: desirable (whole −2, 4 tokens), undesirable (−9, 3 tokens), then 2 KL rows: NLL = 2 / 4 = 0.5."""
    sums = torch.tensor([[-1.0, -2.0], [-5.0, -9.0], [-1.0, -3.0], [-2.0, -4.0]])
    counts = torch.tensor([[2, 4], [2, 3], [2, 4], [2, 3]])
    policy, reference = SegmentLogps(sums, counts), SegmentLogps(sums.clone() * 0.9, counts.clone())
    batch = fake_batch(4, 1, desirable=[True, False], num_kl=2)
    plain = KTOLoss(beta=0.1, segment_names=["Mt"])(policy, reference, batch)
    with_nll = KTOLoss(beta=0.1, segment_names=["Mt"], nll_weight=3.0)(policy, reference, batch)
    assert with_nll.metrics["nll"].item() == pytest.approx(0.5)
    assert with_nll.loss.item() == pytest.approx(plain.loss.item() + 1.5, abs=1e-6)
    segment = SegmentKTOLoss(beta=0.1, weights=FixedWeights([0.0, 1.0]), segment_names=["Mt"], nll_weight=3.0)
    assert segment(policy, reference, batch).loss.item() == pytest.approx(with_nll.loss.item(), abs=1e-6)


def test_a_negative_or_infinite_nll_weight_is_refused() -> None:
    for bad in (-0.1, float("inf")):
        with pytest.raises(ValueError, match="nll_weight"):
            DPOLoss(segment_names=["Mt"], nll_weight=bad)


def test_sft_through_the_module_equals_cross_entropy_of_the_full_logits() -> None:
    """The tiny model's SFT loss on two responses (a padded batch) equals ``F.cross_entropy`` of its own full
    logits over the response tokens (mean over every response token of the batch), and so do the gradients."""
    from hipo.models.logprobs import sequence_segment_logps
    from hipo.models.tiny import build_tiny_model
    from tests.helpers.model_batches import padded_batch

    model = build_tiny_model(vocab_size=64).double()
    batch = padded_batch([([5, 6, 7], [8, 9, 10, 11], [0, 0, 1, 1]), ([5, 12], [13, 14, 15], [0, 1, 1])], 2)
    loss = SFTLoss(segment_names=["Rq", "Mt"])
    out = loss(sequence_segment_logps(model, batch, chunk_size=3), None, batch)
    (ours,) = torch.autograd.grad(out.loss, [model.lm_head.weight])

    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1]
    labels = torch.where(batch.segment_ids >= 0, batch.input_ids, torch.full_like(batch.input_ids, -100))[:, 1:]
    reference = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
    (theirs,) = torch.autograd.grad(reference, [model.lm_head.weight])
    assert out.loss.item() == pytest.approx(reference.item(), rel=1e-10)
    assert torch.allclose(ours, theirs, atol=1e-10)
