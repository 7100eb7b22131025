"""`hipo pairs` end to end on a planted model (every sample is "x=1" or "x=2", see tests/helpers/planted_model.py):
every chosen response graded right and every rejected one wrong by an independent check, the run's metrics from the
samples, overlap with an evaluation split refused before anything is written, a killed run resumed without
resampling what it finished, and training on the pairs file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from hipo.app import pairs_command as command
from hipo.config.compose import compose_config
from hipo.eval.generation import HFGenerator
from hipo.onpolicy.problems import HeldOutProblemError
from tests.helpers.planted_model import planted_model

pytestmark = pytest.mark.slow  # loads a model and samples

NUM_SAMPLES = 4


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return planted_model(tmp_path_factory.mktemp("planted") / "model")


def _problems(path: Path, count: int, extra: list[dict] | None = None) -> Path:
    rows = [
        {"id": f"p{i}", "question": f"Planted problem {i}: find x.", "answer": f"#### {1 + i % 2}"}
        for i in range(count)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in [*rows, *(extra or [])]))
    return path


def _held_out_root(tmp_path: Path) -> Path:
    root = tmp_path / "benchmarks"
    (root / "gsm8k").mkdir(parents=True, exist_ok=True)
    (root / "gsm8k" / "test.jsonl").write_text(
        json.dumps({"question": "A held-out problem: find x.", "answer": "#### 2"})
    )
    return root


def _cfg(tmp_path: Path, planted: Path, mlflow_uri: str, out: Path, problems: Path, *extra: str) -> DictConfig:
    return compose_config(
        [
            "model=tiny",
            f"model.name_or_path={planted}",
            "problems=jsonl",
            f"problems.path={problems}",
            f"evaluate.benchmark_root={_held_out_root(tmp_path)}",
            f"num_samples={NUM_SAMPLES}",
            "chunk_size=2",
            "evaluate.generation.max_new_tokens=6",
            "evaluate.generation.progress=false",
            "segmenter.on_failure=single_segment",
            f"out={out}",
            f"logger.tracking_uri={mlflow_uri}",
            f"logger.artifact_location={tmp_path / 'mlruns'}",
            *extra,
        ],
        config_name="pairs",
    )


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_chosen_is_right_and_every_rejected_wrong(tmp_path: Path, planted: Path, mlflow_uri: str) -> None:
    out = tmp_path / "pairs.jsonl"
    result = command.pairs_command(_cfg(tmp_path, planted, mlflow_uri, out, _problems(tmp_path / "p.jsonl", 6)))
    rows = _rows(out)
    samples = [json.loads(line) for line in Path(result["samples"]).read_text().splitlines()[1:]]
    assert rows and len(samples) == 6 and all(len(s["texts"]) == NUM_SAMPLES for s in samples)
    for row in rows:  # independent of the grader: the planted answers are the strings "x=1" and "x=2"
        assert row["chosen"] == f"x={row['gold']}" and row["rejected"] != f"x={row['gold']}"
        assert row["chosen_correct"] and not row["rejected_correct"]
        assert row["prompt"].endswith(row["question"]) and set(row) >= {"prompt", "chosen", "rejected", "gold"}
    for sample in samples:
        assert sample["correct"] == [text == f"x={sample['gold']}" for text in sample["texts"]]
    mixed = [s for s in samples if 0 < sum(s["correct"]) < NUM_SAMPLES]
    expected = sum(min(4, sum(s["correct"]) * (NUM_SAMPLES - sum(s["correct"]))) for s in mixed)
    metrics = MlflowClient(mlflow_uri).get_run(result["run_id"]).data.metrics
    assert metrics["pairs/pairs_written"] == len(rows) == expected
    assert metrics["pairs/problems_with_pair"] == len(mixed)
    assert metrics["pairs/problems_all_correct"] + metrics["pairs/problems_all_incorrect"] == 6 - len(mixed)
    correct = [c for s in samples for c in s["correct"]]
    assert metrics["pairs/pass_at_1"] == pytest.approx(sum(correct) / len(correct))
    assert metrics[f"pairs/pass_at_{NUM_SAMPLES}"] == pytest.approx(sum(any(s["correct"]) for s in samples) / 6)
    assert metrics["pairs/no_answer_rate"] == 0.0 and metrics["pairs/single_segment"] == 6 * NUM_SAMPLES


def test_problems_in_an_evaluation_split_are_refused_before_anything_is_written(
    tmp_path: Path, planted: Path, mlflow_uri: str
) -> None:
    leak = {"id": "leaked", "question": "A held-out problem: find x.", "answer": "#### 2"}
    out = tmp_path / "pairs.jsonl"
    cfg = _cfg(tmp_path, planted, mlflow_uri, out, _problems(tmp_path / "p.jsonl", 3, [leak]))
    with pytest.raises(HeldOutProblemError, match="leaked"):
        command.pairs_command(cfg)
    assert not out.exists() and not command.samples_path(out).exists()
    assert MlflowClient(mlflow_uri).search_experiments(filter_string="name = 'hipo-pairs'") == []


class _Crash(RuntimeError):
    pass


def test_a_killed_run_resumes_without_resampling(tmp_path: Path, planted: Path, mlflow_uri: str, monkeypatch) -> None:
    problems = _problems(tmp_path / "p.jsonl", 6)  # 3 chunks of 2
    calls: list[int] = []
    crash_at: list[int] = [2]

    class Counting(HFGenerator):
        def generate_texts(self, prompts, config):  # type: ignore[no-untyped-def]
            calls.append(len(prompts))
            if len(calls) == crash_at[0]:
                raise _Crash("killed while sampling chunk 2")
            return super().generate_texts(prompts, config)

    monkeypatch.setattr(command, "HFGenerator", Counting)
    out = tmp_path / "resumed.jsonl"
    with pytest.raises(_Crash):
        command.pairs_command(_cfg(tmp_path, planted, mlflow_uri, out, problems))
    assert len(command.samples_path(out).read_text().splitlines()) == 1 + 2  # header + the finished chunk
    calls.clear()
    crash_at[0] = 0
    resumed = command.pairs_command(_cfg(tmp_path, planted, mlflow_uri, out, problems))
    assert calls == [2, 2]  # chunks 2 and 3 only
    fresh = command.pairs_command(_cfg(tmp_path, planted, mlflow_uri, tmp_path / "fresh.jsonl", problems))
    assert _rows(out) == _rows(tmp_path / "fresh.jsonl")  # ends where an uninterrupted run ends
    run = MlflowClient(mlflow_uri).get_run(resumed["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags.get("hipo.resumes") == "1"
    assert resumed["run_id"] != fresh["run_id"]
    with pytest.raises(Exception, match="other settings"):  # the same out with other settings is refused
        command.pairs_command(_cfg(tmp_path, planted, mlflow_uri, out, problems, "evaluate.generation.temperature=0.5"))


def test_a_stop_signal_ends_the_run_killed_with_the_finished_chunks_kept(
    tmp_path: Path, planted: Path, mlflow_uri: str, monkeypatch
) -> None:
    import os
    import signal

    from hipo.errors import JobInterrupted

    calls: list[int] = []

    class Preempted(HFGenerator):
        def generate_texts(self, prompts, config):  # type: ignore[no-untyped-def]
            calls.append(len(prompts))
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGTERM)  # the cluster preempts the job while it samples chunk 2
            return super().generate_texts(prompts, config)

    monkeypatch.setattr(command, "HFGenerator", Preempted)
    out = tmp_path / "pairs.jsonl"
    with pytest.raises(JobInterrupted):
        command.pairs_command(_cfg(tmp_path, planted, mlflow_uri, out, _problems(tmp_path / "p.jsonl", 6)))
    assert len(command.samples_path(out).read_text().splitlines()) == 1 + 2 and not out.exists()
    (run,) = MlflowClient(mlflow_uri).search_runs(
        [MlflowClient(mlflow_uri).get_experiment_by_name("hipo-pairs").experiment_id]
    )
    assert run.info.status == "KILLED"


def test_training_reads_the_pairs_file(tmp_path: Path, planted: Path, mlflow_uri: str, isolated_data_cache) -> None:
    from hipo.app.train import train

    out = tmp_path / "pairs.jsonl"
    command.pairs_command(_cfg(tmp_path, planted, mlflow_uri, out, _problems(tmp_path / "p.jsonl", 8)))
    cfg = compose_config(
        [
            "model=tiny",
            f"model.name_or_path={planted}",
            "model.lora.enabled=true",
            "data=jsonl",
            f"data.path={out}",
            "data.val_fraction=0.25",
            "segmenter=rules",
            "segmenter.on_failure=single_segment",
            "loss=dpo",
            "loss.nll_weight=1.0",
            "trainer.max_steps=2",
            "trainer.enable_progress_bar=false",
            "trainer.checkpoint_every_n_steps=0",
            "data.batch_size=2",
            f"logger.tracking_uri={mlflow_uri}",
            f"logger.artifact_location={tmp_path / 'mlruns'}",
            f"output_dir={tmp_path / 'train'}",
        ]
    )
    result = train(cfg)
    history = MlflowClient(mlflow_uri).get_metric_history(result["run_id"], "train/nll")
    assert len(history) == 2 and all(m.value > 0 for m in history)
    assert (tmp_path / "train" / "final" / "adapter_config.json").exists()
