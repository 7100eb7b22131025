"""`build_report` end to end on a fake sweep logged into a temporary MLflow store (see conftest.py for the data)."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from hipo.report import build_report
from hipo.report.collect import collect_runs

pytestmark = pytest.mark.slow  # reports of a fake sweep in a fresh MLflow store

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _csv_rows(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with path.open() as handle:
        return {(r["method"], r["metric"]): r for r in csv.DictReader(handle)}


def test_report_of_a_sweep_writes_tables_plots_and_parent_artifacts(fake_sweep, tmp_path: Path) -> None:
    sweep = fake_sweep()
    result = build_report(sweep["uri"], parent_run_id=sweep["parent"], out_dir=tmp_path / "report", n_resamples=2000)
    assert set(result.plots) == {"training_curves", "weights", "benchmarks", "held_out_accuracy"}
    for path in result.plots.values():
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000
    rows = _csv_rows(result.csv)
    # hipo accuracy over its 3 FINISHED seeds (the failed run's 0.0 is excluded): 0.7, 0.7, 0.6
    hipo = rows[("hipo", "eval/toy/accuracy")]
    assert float(hipo["mean"]) == pytest.approx(2 / 3) and float(hipo["std"]) == pytest.approx(math.sqrt(1 / 300))
    assert hipo["n"] == "3" and hipo["test"] == "seeds-paired" and hipo["baseline"] == "dpo"
    # both methods ran seeds 0, 1, 2: the t-test pairs them by seed over the 9 problems every seed evaluated (hipo
    # seed 2 skipped p9): per seed hipo 7/9, 7/9, 6/9 minus dpo 5/9 -> d = 2/9, 2/9, 1/9, Δ = 5/27, SE = 1/27,
    # t = 5 on 2 df: p = 0.03775; the sign test over the pooled shared problems: p0 -1/3, p5 +1, p6 +1 -> 2 up /
    # 1 down, p_sign = 1
    assert float(hipo["diff"]) == pytest.approx(5 / 27) and float(hipo["p_sign"]) == pytest.approx(1.0)
    assert float(hipo["p_value"]) == pytest.approx(0.037750, abs=1e-5) and hipo["verdict"] == "different"
    assert (hipo["n_problems"], hipo["n_better"], hipo["n_worse"], hipo["n_unpaired"]) == ("9", "2", "1", "1")
    dpo = rows[("dpo", "eval/toy/accuracy")]
    assert float(dpo["mean"]) == 0.5 and float(dpo["std"]) == 0.0 and dpo["diff"] == "n/a"
    # held-out Mt (final step, no pair records): dpo 0.5, 0.6, 0.7; hipo 0.8, 0.9, 1.0 -> every seed's
    # difference is 0.3: Δ 0.3 with no spread, p = 0 (paired by seed); no sign test without records
    mt = rows[("hipo", "val/rewards/accuracy/Mt")]
    assert float(mt["mean"]) == pytest.approx(0.9) and float(mt["std"]) == pytest.approx(0.1)
    assert float(mt["diff"]) == pytest.approx(0.3) and mt["p_sign"] == "n/a" and mt["test"] == "seeds-paired"
    assert float(mt["p_value"]) < 1e-6 and mt["n_problems"] == "0"
    # judge mean over dimensions without verbosity: dpo (6 + 8)/2 = 7, hipo (7 + 9)/2 = 8
    assert float(rows[("dpo", "eval/toy/judge_mean")]["mean"]) == pytest.approx(7.0)
    assert float(rows[("hipo", "eval/toy/judge_mean")]["diff"]) == pytest.approx(1.0)

    text = result.markdown.read_text()
    assert "| dpo | 0.500 ± 0.000 (n=3)" in text and "| hipo | 0.667 ± 0.058 (n=3)" in text
    assert "| hipo | toy acc | +0.185 |" in text and "| 9 (+2/−1) | seeds-paired |" in text
    assert "hipo-seed3 (hipo, seed 3): FAILED" in text  # the failed child is listed, not counted
    assert "![weights](weights.png)" in text
    with result.runs_csv.open() as handle:
        statuses = {r["name"]: (r["status"], r["in_statistics"]) for r in csv.DictReader(handle)}
    assert statuses["hipo-seed3"] == ("FAILED", "False") and statuses["dpo-seed0"] == ("FINISHED", "True")

    assert result.parent_run_id == sweep["parent"]
    logged = {Path(f.path).name for f in MlflowClient(sweep["uri"]).list_artifacts(sweep["parent"], "report")}
    assert logged == {p.name for p in result.paths}


def test_runs_are_found_by_sweep_id_and_by_experiment(fake_sweep) -> None:
    sweep = fake_sweep()
    by_parent = collect_runs(sweep["uri"], parent_run_id=sweep["parent"])
    by_sweep = collect_runs(sweep["uri"], sweep_id=sweep["sweep_id"])
    by_experiment = collect_runs(sweep["uri"], experiment_name=sweep["experiment"])
    for found in (by_parent, by_sweep, by_experiment):
        assert sorted(r.run_id for r in found.runs) == sorted(sweep["children"])
        assert [r.run_id for r in found.excluded] == [sweep["failed"]]
        assert found.parent_run_id == sweep["parent"] and found.methods == ["dpo", "hipo"]


def test_experiment_config_selects_its_latest_sweep(fake_sweep) -> None:
    sweep = fake_sweep()
    client = MlflowClient(sweep["uri"])
    experiment_id = client.get_experiment_by_name("fake").experiment_id
    later = int(time.time() * 1000) + 60_000
    tags = {"hipo.sweep_id": "fake-sweep-2", "hipo.role": "sweep", "hipo.experiment": "ablation_fake"}
    parent2 = client.create_run(experiment_id, start_time=later, run_name="sweep-2", tags=tags).info.run_id
    child_tags = {"mlflow.parentRunId": parent2, "hipo.method": "dpo", "hipo.experiment": "ablation_fake"}
    child = client.create_run(experiment_id, start_time=later + 1, run_name="dpo-seed9", tags=child_tags).info.run_id
    client.set_terminated(child, "FINISHED")
    found = collect_runs(sweep["uri"], hipo_experiment="ablation_fake")
    assert [r.run_id for r in found.runs] == [child] and found.parent_run_id == parent2
    assert "latest of 2 sweep(s): fake-sweep-2" in found.description
    with pytest.raises(ValueError, match="a quote cannot be used"):
        collect_runs(sweep["uri"], hipo_experiment="it's")


def test_missing_training_metrics_and_records_degrade_gracefully(fake_sweep, tmp_path: Path) -> None:
    sweep = fake_sweep(with_train=False, samples_missing_for=("dpo", 1))
    result = build_report(sweep["uri"], experiment_name="fake", out_dir=tmp_path / "r", log_to_parent=False)
    assert set(result.plots) == {"benchmarks", "held_out_accuracy"}
    assert not (tmp_path / "r" / "training_curves.png").exists()
    rows = _csv_rows(result.csv)
    acc = rows[("hipo", "eval/toy/accuracy")]
    # one dpo seed has no samples.json: the t-test over the seeds' logged accuracies, Δ = 2/3 - 0.5 = 1/6, no sign
    assert acc["test"] == "seeds-paired" and float(acc["diff"]) == pytest.approx(1 / 6) and acc["p_sign"] == "n/a"
    assert acc["n_problems"] == "0"
    text = result.markdown.read_text()
    assert "training-curve plot skipped" in text and "weights plot skipped" in text
    assert "no per-problem records" in text and "toy acc" in text
    assert result.parent_run_id is None


def test_unknown_baseline_is_reported_not_fatal(fake_sweep, tmp_path: Path) -> None:
    sweep = fake_sweep()
    result = build_report(sweep["uri"], sweep_id=sweep["sweep_id"], out_dir=tmp_path, baseline="kto", n_resamples=100)
    assert any("baseline 'kto' is not among the methods" in n for n in result.notes)
    assert all(r.comparison is None for r in result.rows)


def test_group_by_falls_back_to_the_loss_tag(fake_sweep, tmp_path: Path) -> None:
    sweep = fake_sweep()
    found = collect_runs(sweep["uri"], parent_run_id=sweep["parent"], group_by="hipo.no_such_tag")
    assert found.methods == ["dpo", "hipo"]


def test_bad_samples_artifact_names_run_and_file(fake_sweep, tmp_path: Path) -> None:
    sweep = fake_sweep()
    client = MlflowClient(sweep["uri"])
    client.log_dict(sweep["children"][0], [{"id": "p0"}], "eval/toy/samples.json")
    with pytest.raises(ValueError, match=r"artifact eval/toy/samples.json record 0: field 'correct' is missing"):
        build_report(sweep["uri"], parent_run_id=sweep["parent"], out_dir=tmp_path, n_resamples=100)


def test_nothing_to_report_raises_with_the_selector(mlflow_uri: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="experiment 'nope' not found"):
        build_report(mlflow_uri, experiment_name="nope", out_dir=tmp_path)
    with pytest.raises(ValueError, match="no runs found for sweep s1"):
        build_report(mlflow_uri, sweep_id="s1", out_dir=tmp_path)


def test_held_out_pair_records_are_tested_pair_by_pair(fake_sweep, tmp_path: Path) -> None:
    """Margins Mt (conftest.MT_PAIRS): per-seed means dpo 0.05/0.06/0.07, hipo 0.25/0.26/0.27 -> Δ = 0.2 in every
    seed (paired by seed); every pair favours hipo by 0.2 -> sign test 4 up, p = 2/16. Accuracy from
    the margins: hipo 1 on every pair; dpo seed 0: (1, 1, 0, 1/2), seeds 1 and 2: (1, 1, 0, 1) -> Δ = 1 - 0.7083."""
    sweep = fake_sweep(with_pairs=True)
    result = build_report(sweep["uri"], experiment_name="fake", out_dir=tmp_path / "r", log_to_parent=False)
    rows = _csv_rows(result.csv)
    margin = rows[("hipo", "val/rewards/margin/Mt")]
    assert margin["label"] == "held-out margin Mt" and margin["test"] == "seeds-paired"
    assert margin["verdict"] == "different"
    assert float(margin["diff"]) == pytest.approx(0.2) and float(margin["p_sign"]) == pytest.approx(0.125)
    assert (margin["n_problems"], margin["n_better"], margin["n_worse"]) == ("4", "4", "0")
    accuracy = rows[("hipo", "val/rewards/accuracy/Mt")]
    assert float(accuracy["diff"]) == pytest.approx(1 - (0.625 + 0.75 + 0.75) / 3) and accuracy["n_problems"] == "4"
    # Rq is empty in every pair: no records to test, so the seeds' logged values are
    assert rows[("hipo", "val/rewards/accuracy/Rq")]["n_problems"] == "0"
