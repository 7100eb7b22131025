"""`hipo eval` with the tiny model: metrics, per-sample tables and the prompt go to MLflow; bad benchmark files
fail before any model loads or run opens; local copies are found without the hub; a dead judge fails the command.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from hipo.app import eval_model
from hipo.app.eval_command import evaluate_command
from hipo.cli import main
from hipo.config.compose import compose_config
from hipo.errors import UserError, exit_code_of
from hipo.eval import benchmark_sources
from hipo.eval.benchmarks import shared_benchmark_path

pytestmark = pytest.mark.slow  # `hipo eval` commands: compose, build the tiny model, generate, log to MLflow

GSM8K = shared_benchmark_path("gsm8k")


def _tiny_eval_config(tmp_path: Path, mlflow_uri: str, *overrides: str) -> DictConfig:
    """`hipo eval`'s config for the tiny model (8 new tokens, no progress bar) with its own store and folders."""
    return compose_config(
        [
            "model=tiny",
            "evaluate.generation.max_new_tokens=8",
            "evaluate.generation.progress=false",
            f"logger.tracking_uri={mlflow_uri}",
            f"logger.artifact_location={tmp_path / 'mlruns'}",
            f"output_dir={tmp_path / 'eval'}",
            *overrides,
        ],
        config_name="eval",
    )


@pytest.mark.skipif(GSM8K is None, reason="../shared/data/benchmarks/gsm8k/test.jsonl not available")
def test_eval_tiny_model_on_two_benchmarks_logs_metrics_and_tables(tmp_path: Path, mlflow_uri: str) -> None:
    cfg = _tiny_eval_config(
        tmp_path, mlflow_uri, "benchmark=[gsm8k,synthetic]", f"benchmark.gsm8k.path={GSM8K}", "limit=3"
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


GSM8K_ROWS = [
    {"question": f"Tom has {i} apples and buys 1 more. How many?", "answer": f"{i}+1\n#### {i + 1}"} for i in range(3)
]


def _write(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _closed_port() -> int:
    with socket.socket() as sock:  # bound then closed: nothing listens there, connections are refused at once
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def no_model_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading weights fails the test: bad benchmark files must be found first."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded before the benchmarks were checked")

    monkeypatch.setattr(eval_model, "build_policy", refuse)


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any hub access fails the test."""
    import datasets

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the hub was asked")

    monkeypatch.setattr(datasets, "load_dataset", refuse)
    monkeypatch.setattr(benchmark_sources, "hub_reachable", refuse)


BAD_FILES = {
    "empty": ([], r"file .*bench.jsonl is empty"),
    "wrong schema": ([{"problem": "p", "answer": "\\frac{1}{2}"}] * 3, r"bench.jsonl: no row has a gold .*'####"),
    "bad golds": (GSM8K_ROWS[:1] + [{"question": "q", "answer": "#### \\frac{1}{2}"}] * 2, r"lines 2, 3 "),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_benchmark_files_fail_before_any_model_or_run(
    case: str, tmp_path: Path, mlflow_uri: str, no_model_load: None, no_hub: None
) -> None:
    rows, message = BAD_FILES[case]
    path = _write(tmp_path / "bench.jsonl", rows)
    cfg = compose_config(
        ["model=tiny", "benchmark=[gsm8k]", f"benchmark.gsm8k.path={path}", f"logger.tracking_uri={mlflow_uri}"],
        config_name="eval",
    )
    with pytest.raises(UserError, match=message) as caught:
        evaluate_command(cfg)
    assert exit_code_of(caught.value) == 2 and str(path) in str(caught.value)
    assert MlflowClient(mlflow_uri).search_experiments(filter_string="name = 'hipo-eval'") == []


def test_shared_dir_copy_is_read_by_the_command_without_the_hub(
    tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch, no_hub: None
) -> None:
    shared = tmp_path / "shared"
    rows = [{**row, "idx": f"local-{i}"} for i, row in enumerate(GSM8K_ROWS)]
    _write(shared / "data" / "benchmarks" / "gsm8k" / "test.jsonl", rows)
    monkeypatch.setenv("HIPO_SHARED_DIR", str(shared))
    cfg = _tiny_eval_config(tmp_path, mlflow_uri, "benchmark=[gsm8k]", "limit=2")
    result = evaluate_command(cfg)
    assert result["metrics"]["eval/gsm8k/num_items"] == 2 and "eval/gsm8k/no_answer" in result["metrics"]
    records = json.loads((tmp_path / "eval" / "eval" / "gsm8k" / "samples.json").read_text())
    assert {record["id"] for record in records} <= {"local-0", "local-1", "local-2"}


def _judged_eval(tmp_path: Path, mlflow_uri: str, *extra: str) -> list[str]:
    path = _write(tmp_path / "gsm8k.jsonl", GSM8K_ROWS)
    return [
        "eval",
        "model=tiny",
        "benchmark=[gsm8k]",
        f"benchmark.gsm8k.path={path}",
        "limit=2",
        "evaluate.generation.max_new_tokens=4",
        "evaluate.generation.progress=false",
        "evaluate.judge.enabled=true",
        f"evaluate.judge.client.base_url=http://127.0.0.1:{_closed_port()}/v1",
        "evaluate.judge.client.max_retries=0",
        f"evaluate.judge.client.cache_dir={tmp_path / 'llm-cache'}",
        f"logger.tracking_uri={mlflow_uri}",
        f"logger.artifact_location={tmp_path / 'mlruns'}",
        f"hydra.run.dir={tmp_path / 'out'}",
        *extra,
    ]


def _only_run(mlflow_uri: str):  # noqa: ANN202 - an MLflow Run
    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name("hipo-eval")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    return runs[0]


def test_unreachable_judge_fails_the_command_and_shows_in_the_table(
    tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(_judged_eval(tmp_path, mlflow_uri))
    captured = capsys.readouterr()
    assert exit_.value.code == 2
    assert "judge FAILED 2/2: " in captured.out  # the table still comes first
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "the judge failed on every item: gsm8k 2/2" in errors[0], captured.err
    assert "hint: " in captured.err and "evaluate.judge.allow_failures=true" in captured.err
    run = _only_run(mlflow_uri)
    assert run.info.status == "FAILED" and run.data.metrics["eval/gsm8k/judge_failed"] == 2
    assert "eval/gsm8k/accuracy" in run.data.metrics  # the results are kept


def test_unreachable_judge_is_allowed_with_allow_failures(
    tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    main(_judged_eval(tmp_path, mlflow_uri, "evaluate.judge.allow_failures=true"))
    assert "judge FAILED 2/2: " in capsys.readouterr().out
    assert _only_run(mlflow_uri).info.status == "FINISHED"
