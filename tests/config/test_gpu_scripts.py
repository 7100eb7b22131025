"""The prepared GPU scripts (no GPU in CI): valid bash, and the training configs they run compose and validate."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hipo.app.validate import validate_trainer
from hipo.config.compose import compose_config

SCRIPTS = sorted((Path(__file__).resolve().parents[2] / "experiments" / "perf").glob("gpu*check.sh"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_gpu_scripts_are_valid_bash(script: Path) -> None:
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0


@pytest.mark.parametrize("trainer", ["ddp", "fsdp", "deepspeed"])
def test_multi_process_trainer_configs_compose(trainer: str) -> None:
    cfg = compose_config(["model=tiny", f"trainer={trainer}", "trainer.devices=2"])
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.devices == 2
    if trainer == "ddp":  # the others need a GPU (and deepspeed) to validate; on CPU they are refused, by name
        cfg.trainer.accelerator = "cpu"
        assert validate_trainer(cfg.trainer) == 2
