"""A real `hipo train -m` sweep (2 losses x 2 seeds, tiny model) -> one MLflow parent, 4 children -> `hipo report`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from hipo.app.report_command import report_command
from hipo.config.compose import compose_config

pytestmark = pytest.mark.slow  # a real `hipo train -m` sweep (4 trainings + eval) in a subprocess, then a report

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_sweep_makes_four_children_under_one_parent_and_report_compares_them(
    tmp_path: Path, mlflow_uri: str, isolated_data_cache: Path
) -> None:
    command = [
        sys.executable,
        "-m",
        "hipo.cli",
        "train",
        "-m",
        "model=tiny",
        "method=dpo,hipo",
        "seed=0,1",
        "trainer.max_steps=2",
        "trainer.enable_progress_bar=false",
        "trainer.checkpoint_every_n_steps=0",
        "data.source.num_pairs=16",
        "data.val_source.num_pairs=8",
        "evaluate.enabled=true",
        "benchmark=[synthetic]",
        "evaluate.limit=4",
        "evaluate.generation.max_new_tokens=8",
        "evaluate.generation.progress=false",
        "logger.experiment_name=sweep-test",
        f"logger.tracking_uri={mlflow_uri}",
        f"logger.artifact_location={tmp_path / 'mlruns'}",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
    ]
    env = {**os.environ, "HIPO_CACHE": str(isolated_data_cache)}
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]

    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name("sweep-test")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("hipo.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert all(r.info.status == "FINISHED" for r in children)
    assert sorted(r.info.run_name for r in children) == ["dpo-seed0", "dpo-seed1", "hipo-seed0", "hipo-seed1"]
    assert all("eval/synthetic/accuracy" in r.data.metrics for r in children)

    out_dir = tmp_path / "report"
    cfg = compose_config(
        [f"logger.tracking_uri={mlflow_uri}", "mlflow_experiment=sweep-test", f"out_dir={out_dir}", "n_resamples=200"],
        config_name="report",
    )
    report_command(cfg)
    table = (out_dir / "report.md").read_text()
    assert "| dpo |" in table and "| hipo |" in table
    csv = (out_dir / "report.csv").read_text()
    assert "hipo" in csv and "dpo" in csv
    for plot in ("training_curves.png", "benchmarks.png", "held_out_accuracy.png"):
        data = (out_dir / plot).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000, plot
    parent_artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id, "report")}
    assert "report/report.md" in parent_artifacts
