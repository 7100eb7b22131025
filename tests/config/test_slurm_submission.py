"""The SLURM launcher's generated submission carries what Lightning needs: one srun task per device, on every node.

The real Hydra submitit launcher builds its executor from `hydra/launcher=slurm`; ``map_array`` (the call that
would run ``sbatch``) is replaced to capture the executor, whose sbatch script is then rendered as submitit would.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import submitit
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from hipo.cli import config_dir
from hipo.config import register_configs

pytestmark = pytest.mark.slow  # composes the SLURM launcher and renders its submission


def _submission(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *overrides: str) -> str:
    register_configs()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=["hydra/launcher=slurm", f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides],
            return_hydra_config=True,
        )
    fake_bin = tmp_path / "bin"  # submitit refuses to build a SLURM executor where `srun` is not on PATH
    fake_bin.mkdir(exist_ok=True)
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 1\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    captured: list[submitit.AutoExecutor] = []
    monkeypatch.setattr(submitit.AutoExecutor, "map_array", lambda self, *args: captured.append(self) or [])
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=None, config=cfg)
    assert launcher.launch([["seed=0"]], initial_job_idx=0) == []
    (executor,) = captured
    return executor._executor._make_submission_file_text("python -u -m submitit.core._submit /folder", "uid")


def test_multi_node_ddp_submission_runs_one_srun_task_per_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = _submission(
        tmp_path, monkeypatch, "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2", "hydra.launcher.partition=gpu"
    )
    lines = text.splitlines()
    for expected in (
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --partition=gpu",
        "#SBATCH --signal=USR2@300",  # time to finish the step and write the checkpoint before the time limit
        "#SBATCH --requeue",
        "#SBATCH --time=720",
    ):
        assert expected in lines, f"{expected!r} not in the submission:\n{text}"
    assert any(line.startswith("srun ") for line in lines)  # srun starts the 8 tasks: Lightning's SLURM environment


def test_the_slurm_launcher_needs_a_device_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(Exception, match="one task per device: set trainer.devices to the GPUs per node"):
        _submission(tmp_path, monkeypatch, "trainer=ddp")  # devices=-1: "all GPUs" is not a SLURM task count
