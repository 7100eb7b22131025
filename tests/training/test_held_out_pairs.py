"""Each held-out pair's margins: kept by the metrics, written as ``held_out/pairs.csv``, read back by the report."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from hipo.losses.types import SegmentLogps
from hipo.report.collect import load_held_out_pairs, pair_accuracy
from hipo.report.records import RunRecords
from hipo.report.tables import MetricSpec
from hipo.training.held_out import HeldOutPreferenceMetrics


def _batch() -> tuple[SegmentLogps, SegmentLogps, torch.Tensor]:
    """3 pairs × terms (a, whole); pair 1 has no ``a`` tokens on either side; pair 2 is shard padding.

    Policy − reference per row: chosen (0.5, 1.0), (0, 2.0), (9, 9); rejected (0.25, -1.0), (0, 2.0), (9, 9).
    With beta 2 the margins are pair 0: (0.5, 4.0), pair 1: (absent, 0.0); pair 2 is left out.
    """
    reference = SegmentLogps(torch.zeros(6, 2), torch.ones(6, 2, dtype=torch.long))
    sums = torch.tensor([[0.5, 1.0], [0.0, 2.0], [9.0, 9.0], [0.25, -1.0], [0.0, 2.0], [9.0, 9.0]])
    counts = torch.ones(6, 2, dtype=torch.long)
    counts[[1, 4], 0] = 0
    return SegmentLogps(sums, counts), reference, torch.tensor([10, 11, -1])


def test_each_valid_pair_keeps_its_margins_and_absent_terms_are_nan(tmp_path: Path) -> None:
    metrics = HeldOutPreferenceMetrics(["a", "whole"])
    policy, reference, pair_ids = _batch()
    metrics.update(policy, reference, beta=2.0, valid=pair_ids >= 0, pair_ids=pair_ids)
    assert set(metrics.pair_margins) == {10, 11}
    assert metrics.pair_margins[10] == pytest.approx([0.5, 4.0])
    assert math.isnan(metrics.pair_margins[11][0]) and metrics.pair_margins[11][1] == 0.0
    # the pairs' records agree with the accumulated statistics: whole accuracy (1 + 1/2) / 2, margin (4 + 0) / 2
    summary = metrics.compute()
    assert summary["rewards/accuracy/whole"] == 0.75 and summary["rewards/margin/whole"] == 2.0
    written = metrics.write_pairs(tmp_path / "held_out" / "pairs.csv").read_text().splitlines()
    assert written == ["pair,margin/a,margin/whole", "10,0.5,4.0", "11,,0.0"]
    metrics.reset()
    assert metrics.pair_margins == {}


def test_the_report_reads_pairs_as_margins_and_accuracies(mlflow_uri: str, tmp_path: Path) -> None:
    metrics = HeldOutPreferenceMetrics(["a", "whole"])
    policy, reference, pair_ids = _batch()
    metrics.update(policy, reference, beta=2.0, valid=pair_ids >= 0, pair_ids=pair_ids)
    client = MlflowClient(mlflow_uri)
    experiment = client.create_experiment("pairs", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    client.log_artifact(run_id, str(metrics.write_pairs(tmp_path / "pairs.csv")), "held_out")
    assert load_held_out_pairs(mlflow_uri, run_id) == {"a": {"10": 0.5, "11": pytest.approx(math.nan, nan_ok=True)},
                                                       "whole": {"10": 4.0, "11": 0.0}}  # fmt: skip
    records = RunRecords(mlflow_uri)
    margin = MetricSpec("val/rewards/margin/whole", "m", "held_out", term="whole", statistic="margin")
    accuracy = MetricSpec("val/rewards/accuracy/whole", "a", "held_out", term="whole", statistic="accuracy")
    assert records(run_id, margin) == {"10": 4.0, "11": 0.0}
    assert records(run_id, accuracy) == {"10": 1.0, "11": 0.5}
    other = MetricSpec("val/rewards/accuracy/Mt", "a", "held_out", term="Mt", statistic="accuracy")
    assert records(run_id, other) is None  # a term the run did not record
    without = client.create_run(experiment).info.run_id
    assert load_held_out_pairs(mlflow_uri, without) is None and records(without, accuracy) is None


def test_a_damaged_pairs_file_names_the_run_and_the_line(mlflow_uri: str, tmp_path: Path) -> None:
    client = MlflowClient(mlflow_uri)
    experiment = client.create_experiment("bad", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    client.log_text(run_id, "pair,margin/whole\n0,0.5\n1,abc\n", "held_out/pairs.csv")
    with pytest.raises(ValueError, match=rf"run {run_id} artifact held_out/pairs.csv:3: margin/whole='abc'"):
        load_held_out_pairs(mlflow_uri, run_id)


def test_pair_accuracy_counts_ties_as_half() -> None:
    assert [pair_accuracy(m) for m in (0.3, 0.0, -1e-9)] == [1.0, 0.5, 0.0]
    assert math.isnan(pair_accuracy(math.nan))
