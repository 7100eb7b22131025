"""A preempted job of the submitit launcher is requeued and resumes by itself, in the same MLflow run.

submitit's local executor runs the job exactly as on SLURM (same job environment, same signal handling, same
pickled resubmission), with a restart in place of ``scontrol requeue``. The job receives submitit's preemption
signal (USR2) at step 3: it finishes the step, writes its checkpoint, marks the run KILLED and hands over to
submitit, which requeues it; the requeued job resumes from the checkpoint (``resume`` defaults to auto under
submitit) and finishes the same run (that a resumed run ends bit for bit where an uninterrupted one does is
tests/training/test_resume.py's).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.cli_runs import TINY_TRAIN, history, run_hipo, runs_of

pytestmark = pytest.mark.slow


def test_a_preempted_submitit_job_is_requeued_and_resumes_exactly(
    tmp_path: Path, mlflow_uri: str, isolated_data_cache: Path
) -> None:
    common = [
        *TINY_TRAIN,
        "trainer.max_steps=6",
        "trainer.checkpoint_every_n_steps=3",
        f"logger.tracking_uri={mlflow_uri}",
    ]
    reference = run_hipo(
        ["train", *common, "logger.experiment_name=ref", f"output_dir={tmp_path / 'ref'}"],
        tmp_path,
        isolated_data_cache,
    )
    assert reference.returncode == 0, reference.stderr[-3000:]

    marker = tmp_path / "preempted-once"
    sweep = run_hipo(
        [
            "train",
            "-m",
            *common,
            "hydra/launcher=submitit_local",
            "hydra.launcher.timeout_min=20",
            "logger.experiment_name=requeue",
            f"hydra.sweep.dir={tmp_path / 'multirun'}",
        ],
        tmp_path,
        isolated_data_cache,
        env={"HIPO_TEST_SIGNAL_AT_STEP": "3", "HIPO_TEST_SIGNAL": "USR2", "HIPO_TEST_SIGNAL_ONCE": str(marker)},
    )
    assert sweep.returncode == 0, sweep.stderr[-4000:]
    assert marker.exists()  # the preemption did happen

    runs = runs_of(mlflow_uri, "requeue")
    (child,) = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    (parent,) = [r for r in runs if r.data.tags.get("hipo.role") == "sweep"]
    assert child.info.status == "FINISHED" and child.data.tags["hipo.resumes"] == "1"
    assert parent.info.status == "FINISHED"
    assert [s for s, _ in history(mlflow_uri, child.info.run_id, "train/loss")] == list(range(6))
    logs = "".join(p.read_text() for p in (tmp_path / "multirun" / ".submitit").rglob("*_log.*"))
    assert "stopping at step 4" in logs and "resume=auto: continuing from" in logs
    assert (tmp_path / "multirun" / "0" / "final" / "hipo.json").is_file()
