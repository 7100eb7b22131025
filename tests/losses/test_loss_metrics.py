"""Pair metrics: hand values, masking, exact accumulation across batches."""

from __future__ import annotations

import pytest
import torch

from hipo.losses.metrics import add_sums, metrics_from_sums, pair_metric_sums, pair_metrics

t = torch.tensor
NAMES = ["Mt", "whole"]
CHOSEN = t([[1.0, 2.0], [0.0, -1.0], [3.0, 0.5]])
REJECTED = t([[0.0, 2.0], [1.0, -3.0], [1.0, 0.0]])
MASK = t([[True, True], [True, False], [False, True]])


def test_hand_values() -> None:
    """Margins [[1, 0], [-1, 2], [2, 0.5]].
    Mt: present pairs 0, 1 -> margins (1, -1): mean 0, accuracy 1/2 (pair 2's margin 2 is masked out).
    whole: present pairs 0, 2 -> margins (0, 0.5): mean 0.25, accuracy 1/2 (the tie scores 0);
    with tie_score 0.5: (0.5 + 1) / 2 = 0.75."""
    m = pair_metrics(CHOSEN, REJECTED, MASK, NAMES)
    assert set(m) == {f"rewards/{kind}/{name}" for kind in ("margin", "accuracy") for name in NAMES}
    assert m["rewards/margin/Mt"].item() == pytest.approx(0.0)
    assert m["rewards/accuracy/Mt"].item() == pytest.approx(0.5)
    assert m["rewards/margin/whole"].item() == pytest.approx(0.25)
    assert m["rewards/accuracy/whole"].item() == pytest.approx(0.5)
    tied = pair_metrics(CHOSEN, REJECTED, MASK, NAMES, tie_score=0.5)
    assert tied["rewards/accuracy/whole"].item() == pytest.approx(0.75)


def test_term_absent_from_every_pair_has_no_key() -> None:
    mask = MASK.clone()
    mask[:, 0] = False
    m = pair_metrics(CHOSEN, REJECTED, mask, NAMES)
    assert set(m) == {"rewards/margin/whole", "rewards/accuracy/whole"}
    sums = pair_metric_sums(CHOSEN, REJECTED, mask, NAMES)
    assert sums["Mt"].num_present.item() == 0
    assert "rewards/accuracy/Mt" not in metrics_from_sums(sums)


def test_sums_hand_values() -> None:
    """Mt: margin sum 1 + (-1) = 0, correct 1, present 2. whole: 0 + 0.5 = 0.5, correct 1, present 2."""
    sums = pair_metric_sums(CHOSEN, REJECTED, MASK, NAMES)
    assert [float(x) for x in sums["Mt"]] == [0.0, 1.0, 2.0]
    assert [float(x) for x in sums["whole"]] == [0.5, 1.0, 2.0]


def test_accumulated_sums_are_exact_over_uneven_batches() -> None:
    """Batches of 1 and 3 pairs: accumulated sums equal the metrics of the concatenation, while the mean of the
    two batch accuracies would not (batch 1: 1/1 correct, batch 2: 1/3 -> mean of means 2/3, exact 2/4 = 1/2)."""
    chosen = t([[1.0], [1.0], [-1.0], [-2.0]])
    rejected = torch.zeros(4, 1)
    mask = torch.ones(4, 1, dtype=torch.bool)
    names = ["whole"]
    first = pair_metric_sums(chosen[:1], rejected[:1], mask[:1], names)
    second = pair_metric_sums(chosen[1:], rejected[1:], mask[1:], names)
    accumulated = metrics_from_sums(add_sums(first, second))
    assert accumulated["rewards/accuracy/whole"] == pytest.approx(0.5)
    assert accumulated["rewards/margin/whole"] == pytest.approx(-0.25)
    whole = pair_metrics(chosen, rejected, mask, names)
    assert {k: v.item() for k, v in whole.items()} == pytest.approx(accumulated)


def test_metrics_are_detached() -> None:
    chosen = CHOSEN.clone().requires_grad_(True)
    m = pair_metrics(chosen, REJECTED, MASK, NAMES)
    assert not any(v.requires_grad for v in m.values())


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"'term_mask': \(3, 1\)"):
        pair_metrics(CHOSEN, REJECTED, MASK[:, :1], NAMES)
    with pytest.raises(ValueError, match="2 terms but 3 names"):
        pair_metrics(CHOSEN, REJECTED, MASK, ["Rq", "Mt", "whole"])
    with pytest.raises(ValueError, match="names differ"):
        add_sums(pair_metric_sums(CHOSEN, REJECTED, MASK, NAMES), pair_metric_sums(CHOSEN, REJECTED, MASK, ["a", "b"]))
