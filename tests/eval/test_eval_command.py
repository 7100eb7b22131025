"""`hipo eval` with the tiny model on two benchmarks: metrics, per-sample tables and the prompt go to MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from hipo.app.evaluate import evaluate_command
from hipo.config.compose import compose_config
from hipo.eval.benchmarks import shared_benchmark_path

GSM8K = shared_benchmark_path("gsm8k")


@pytest.mark.skipif(GSM8K is None, reason="../shared/data/benchmarks/gsm8k/test.jsonl not available")
def test_eval_tiny_model_on_two_benchmarks_logs_metrics_and_tables(tmp_path: Path, mlflow_uri: str) -> None:
    cfg = compose_config(
        [
            "model=tiny",
            "benchmark=[gsm8k,synthetic]",
            f"benchmark.gsm8k.path={GSM8K}",
            "limit=3",
            "evaluate.generation.max_new_tokens=8",
            "evaluate.generation.progress=false",
            f"logger.tracking_uri={mlflow_uri}",
            f"logger.artifact_location={tmp_path / 'mlruns'}",
            f"output_dir={tmp_path / 'eval'}",
        ],
        config_name="eval",
    )
    result = evaluate_command(cfg)
    client = MlflowClient(mlflow_uri)
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    for bench in ("gsm8k", "synthetic"):
        assert run.data.metrics[f"eval/{bench}/num_items"] == 3
        assert 0.0 <= run.data.metrics[f"eval/{bench}/accuracy"] <= 1.0
        records = json.loads(Path(client.download_artifacts(run.info.run_id, f"eval/{bench}/samples.json")).read_text())
        assert len(records) == 3
        assert {"prompt", "generation", "extracted", "gold", "correct"} <= set(records[0])
    template = Path(client.download_artifacts(run.info.run_id, "eval/prompt_template.txt")).read_text()
    assert "{question}" in template and "\\boxed{}" in template


def test_unknown_benchmark_fails_before_loading_any_model(tmp_path: Path, mlflow_uri: str) -> None:
    cfg = compose_config(
        ["model=tiny", "benchmark=[synthetic]", "+benchmark.nope.name=nope", f"logger.tracking_uri={mlflow_uri}"],
        config_name="eval",
    )
    with pytest.raises(ValueError, match="nope"):
        evaluate_command(cfg)
    assert MlflowClient(mlflow_uri).search_experiments(filter_string="name = 'hipo-eval'") == []


def test_missing_benchmark_file_names_the_file(tmp_path: Path, mlflow_uri: str) -> None:
    missing = tmp_path / "gone.jsonl"
    cfg = compose_config(["model=tiny", "benchmark=[gsm8k]", f"benchmark.gsm8k.path={missing}"], config_name="eval")
    with pytest.raises(FileNotFoundError, match="gone.jsonl"):
        evaluate_command(cfg)
