"""Sweep grouping: run names, the parent run's lifecycle (hooks called directly) and a real Hydra multirun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.utils import JobReturn, JobStatus
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from hipo.tracking.run import tracked_run
from hipo.tracking.sweep import (
    PARENT_ENV,
    PARENT_FILE,
    VARYING_ENV,
    MLflowSweepCallback,
    child_run_name,
    parent_run_id,
    read_parent_file,
    sweep_id_of,
    varying_keys,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------------------------------------- names
@pytest.mark.parametrize(
    ("overrides", "base", "expected"),
    [
        (["loss=hipo", "seed=1"], "hipo", "hipo-seed1"),
        (["loss=hipo", "loss.weights=learned"], "hipo", "hipo-weights_learned"),
        (["+loss.weights=learned", "seed=0"], "hipo-learned", "hipo-learned-seed0"),
        (["loss=dpo", "optim.lr=1e-5", "loss.beta=0.2"], "dpo", "dpo-lr1e-5-beta0.2"),
        (["experiment=ablation_rq", "seed=2"], "hipo", "hipo-ablation_rq-seed2"),
        (["model=tiny", "hydra.launcher.n_jobs=2", "logger.experiment_name=x"], "kto", "kto-tiny"),
        (["~loss.weights", "seed=3"], "hipo", "hipo-seed3"),
        (["data.path='/a b/c.jsonl'"], "dpo", "dpo-path_a_b_c.jsonl"),
    ],
)
def test_child_run_name_examples(overrides: list[str], base: str, expected: str, clean_env: None) -> None:
    assert child_run_name(overrides, base=base) == expected


def test_child_run_name_only_names_varying_keys() -> None:
    overrides = ["loss=hipo", "seed=1", "trainer.max_steps=10", "model=tiny"]
    assert child_run_name(overrides, base="hipo", varying=["loss", "seed"]) == "hipo-seed1"


def test_child_run_name_reads_varying_keys_of_the_running_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VARYING_ENV, json.dumps(["seed"]))
    assert child_run_name(["model=tiny", "seed=4"], base="dpo") == "dpo-seed4"


def test_child_run_names_are_unique_over_a_grid_and_long_names_are_cut_with_a_digest(clean_env: None) -> None:
    grid = [
        [f"loss={loss}", f"seed={seed}", f"loss.beta={beta}"]
        for loss in ("dpo", "hipo")
        for seed in range(3)
        for beta in ("0.1", "0.2")
    ]
    names = [child_run_name(o, base=o[0].split("=")[1]) for o in grid]
    assert len(set(names)) == len(grid)
    long_a = [f"model.name_or_path={'x' * 60}/a", "seed=1", f"data.path={'y' * 60}"]
    long_b = [f"model.name_or_path={'x' * 60}/b", "seed=1", f"data.path={'y' * 60}"]
    name_a, name_b = child_run_name(long_a, base="hipo"), child_run_name(long_b, base="hipo")
    assert len(name_a) <= 80 and len(name_b) <= 80 and name_a != name_b


def test_varying_keys_recognizes_sweep_syntax() -> None:
    overrides = ["loss=dpo,hipo", "seed=range(3)", "model=tiny", "optim.lr=choice(1e-5,1e-4)", "+x=1"]
    assert varying_keys(overrides) == ["loss", "seed", "optim.lr"]


# ------------------------------------------------------------------------------------------------ callback hooks
def _multirun_config(sweep_dir: Path, overrides: list[str]):
    return OmegaConf.create(
        {
            "hydra": {
                "mode": "RunMode.MULTIRUN",
                "sweep": {"dir": str(sweep_dir)},
                "overrides": {"task": overrides},
                "runtime": {"choices": {"experiment": "ablation_mt"}},
                "job": {"name": "train"},
            }
        }
    )


def _job_config(base, job_dir: Path, num: int):
    cfg = OmegaConf.merge(base, {"hydra": {"runtime": {"output_dir": str(job_dir)}, "job": {"num": num}}})
    return cfg


def _job_return(overrides: list[str], status: JobStatus) -> JobReturn:
    ret = JobReturn(overrides=overrides, status=status)
    ret.return_value = RuntimeError("boom") if status == JobStatus.FAILED else {"ok": True}
    return ret


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PARENT_ENV, raising=False)
    monkeypatch.delenv(VARYING_ENV, raising=False)


def _run_fake_sweep(tmp_path: Path, uri: str, fail_second: bool) -> tuple[MLflowSweepCallback, Path]:
    sweep_dir = tmp_path / "multirun" / "sweep1"
    cfg = _multirun_config(sweep_dir, ["loss=dpo,hipo", "model=tiny"])
    callback = MLflowSweepCallback(uri, "hipo-test", artifact_location=str(tmp_path / "artifacts"))
    callback.on_multirun_start(cfg)
    assert os.environ[PARENT_ENV] == callback.run_id
    assert parent_run_id() == callback.run_id
    for num, loss in enumerate(("dpo", "hipo")):
        overrides = [f"loss={loss}", "model=tiny"]
        failed = fail_second and num == 1
        try:
            with tracked_run(
                uri,
                "hipo-test",
                child_run_name(overrides, base=loss),
                {"hipo.loss": loss},
                parent_run_id=parent_run_id(),
            ):
                if failed:
                    raise RuntimeError("job crashed")
        except RuntimeError:
            pass
        status = JobStatus.FAILED if failed else JobStatus.COMPLETED
        callback.on_job_end(_job_config(cfg, sweep_dir / str(num), num), _job_return(overrides, status))
    callback.on_multirun_end(cfg)
    return callback, sweep_dir


@pytest.mark.slow  # a sweep in MLflow
def test_callback_creates_parent_nests_children_and_finishes(tmp_path: Path, mlflow_uri: str, clean_env) -> None:
    callback, sweep_dir = _run_fake_sweep(tmp_path, mlflow_uri, fail_second=False)
    client = MlflowClient(mlflow_uri)
    parent = client.get_run(callback.run_id)
    assert parent.info.status == "FINISHED"
    tags = parent.data.tags
    assert tags["hipo.sweep_id"] == callback.sweep_id and tags["hipo.experiment"] == "ablation_mt"
    assert tags["hipo.overrides"] == "loss=dpo,hipo model=tiny" and tags["hipo.sweep_varying"] == "loss"
    assert parent.data.metrics["sweep/children_finished"] == 2.0 and parent.data.metrics["sweep/jobs_failed"] == 0
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{callback.run_id}'")
    assert sorted(r.info.run_name for r in children) == ["dpo", "hipo"]  # only `loss` varies; equals the base
    record = read_parent_file(sweep_dir)
    assert record is not None and record["run_id"] == callback.run_id and record["varying"] == ["loss"]
    assert sweep_id_of(callback.run_id, mlflow_uri) == callback.sweep_id
    summary = json.loads(
        Path(client.download_artifacts(callback.run_id, "sweep/summary.json", str(tmp_path))).read_text()
    )
    assert summary["ok"] is True and len(summary["jobs"]) == 2
    assert PARENT_ENV not in os.environ  # restored after the sweep: a later single run is not nested by mistake


@pytest.mark.slow  # a sweep in MLflow
def test_callback_marks_parent_failed_when_a_child_failed(tmp_path: Path, mlflow_uri: str, clean_env) -> None:
    callback, _ = _run_fake_sweep(tmp_path, mlflow_uri, fail_second=True)
    client = MlflowClient(mlflow_uri)
    parent = client.get_run(callback.run_id)
    assert parent.info.status == "FAILED"
    assert parent.data.metrics["sweep/children_failed"] == 1.0 and parent.data.metrics["sweep/jobs_failed"] == 1.0
    text = Path(client.download_artifacts(callback.run_id, "sweep/summary.md", str(tmp_path))).read_text()
    assert "1/2 child runs finished, 1 failed" in text and "RuntimeError: boom" in text


@pytest.mark.slow  # a sweep in MLflow
def test_atexit_fallback_never_leaves_the_parent_running(tmp_path: Path, mlflow_uri: str, clean_env) -> None:
    callback = MLflowSweepCallback(mlflow_uri, "hipo-test")
    callback.on_multirun_start(_multirun_config(tmp_path / "sweep", ["seed=0,1"]))
    callback._close_if_open()  # what atexit runs when the sweep dies before on_multirun_end
    assert MlflowClient(mlflow_uri).get_run(callback.run_id).info.status == "FAILED"


def test_parent_file_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / PARENT_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=rf"{PARENT_FILE}:1: not valid JSON"):
        read_parent_file(tmp_path)
    (tmp_path / PARENT_FILE).write_text('{"sweep_id": "x"}')
    with pytest.raises(ValueError, match="field 'run_id' is missing"):
        read_parent_file(tmp_path)


def test_parent_run_id_is_none_outside_a_sweep(clean_env) -> None:
    assert parent_run_id() is None


# ------------------------------------------------------------------------------------------- a real Hydra multirun
APP = """
import hydra, mlflow
from hydra.core.hydra_config import HydraConfig
from hipo.tracking.run import tracked_run
from hipo.tracking.sweep import child_run_name, parent_run_id

@hydra.main(version_base="1.3", config_path=".", config_name="config")
def main(cfg):
    overrides = list(HydraConfig.get().overrides.task)
    try:
        with tracked_run(cfg.uri, "exp", child_run_name(overrides, base=cfg.loss), {"hipo.loss": cfg.loss},
                         parent_run_id=parent_run_id()) as run_id:
            mlflow.log_metric("train/rewards/accuracy/Mt", 0.5 + cfg.seed / 10, run_id=run_id)
            if cfg.loss == "kto" and cfg.seed == 1:
                raise RuntimeError("diverged")
    except RuntimeError:
        pass  # the run is FAILED in MLflow; the sweep goes on

main()
"""

CONFIG = """
loss: dpo
seed: 0
uri: ???
hydra:
  sweep: {dir: SWEEP_DIR, subdir: "${hydra.job.num}"}
  callbacks:
    mlflow_sweep:
      _target_: hipo.tracking.sweep.MLflowSweepCallback
      tracking_uri: ${uri}
      experiment_name: exp
"""


@pytest.mark.slow  # a real Hydra multirun in a subprocess
def test_real_hydra_multirun_groups_jobs_under_one_parent(tmp_path: Path, mlflow_uri: str) -> None:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "config.yaml").write_text(CONFIG.replace("SWEEP_DIR", str(tmp_path / "multirun")))
    env = {k: v for k, v in os.environ.items() if k not in (PARENT_ENV, VARYING_ENV)}
    proc = subprocess.run(
        [sys.executable, "app.py", "-m", "loss=dpo,kto", "seed=0,1", f"uri={mlflow_uri}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
    parents = [r for r in runs if r.data.tags.get("hipo.role") == "sweep"]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    names = {r.info.run_name: r.info.status for r in children}
    assert names == {"dpo-seed0": "FINISHED", "dpo-seed1": "FINISHED", "kto-seed0": "FINISHED", "kto-seed1": "FAILED"}
    assert parent.info.status == "FAILED" and parent.data.metrics["sweep/children_finished"] == 3.0
    assert json.loads((tmp_path / "multirun" / PARENT_FILE).read_text())["run_id"] == parent.info.run_id


@pytest.mark.slow  # a composition and a sweep in MLflow
def test_keys_swept_by_the_config_itself_are_named(
    tmp_path: Path, mlflow_uri: str, clean_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An experiment's own grid (`hydra.sweeper.params`) varies too: `hipo train -m experiment=study_cpu`."""
    for name in (PARENT_ENV, VARYING_ENV):  # registered with monkeypatch so the callback's values are undone
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    cfg = _multirun_config(tmp_path / "sweep", ["experiment=study_cpu"])
    cfg.hydra.sweeper = OmegaConf.create({"params": {"method": "dpo,hipo", "seed": "0,1,2", "trainer.max_steps": 5}})
    callback = MLflowSweepCallback(mlflow_uri, "hipo-test")
    callback.on_multirun_start(cfg)
    try:
        assert json.loads(os.environ[VARYING_ENV]) == ["method", "seed"]
        assert child_run_name(["method=hipo", "seed=2", "experiment=study_cpu"], base="hipo") == "hipo-seed2"
    finally:
        callback.on_multirun_end(cfg)
