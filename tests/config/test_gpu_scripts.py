"""The prepared GPU scripts (no GPU in CI): valid bash, and the training configs they run compose and validate."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from hipo.app.validate import validate_trainer
from hipo.config.compose import compose_config

CONF = Path(__file__).resolve().parents[2] / "conf"
SCRIPTS = sorted((Path(__file__).resolve().parents[2] / "experiments" / "perf").glob("gpu*check.sh"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_gpu_scripts_are_valid_bash(script: Path) -> None:
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0


@pytest.mark.slow  # a composition per trainer
@pytest.mark.parametrize("trainer", ["ddp", "fsdp", "deepspeed"])
def test_multi_process_trainer_configs_compose(trainer: str) -> None:
    cfg = compose_config(["model=tiny", f"trainer={trainer}", "trainer.devices=2"])
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.devices == 2
    if trainer == "ddp":  # the others need a GPU (and deepspeed) to validate; on CPU they are refused, by name
        cfg.trainer.accelerator = "cpu"
        assert validate_trainer(cfg.trainer) == 2


def _perf_overrides(script: Path) -> list[list[str]]:
    """The Hydra overrides of each `hipo.app.perf_command` command in ``script`` (those without shell variables)."""
    text = script.read_text().replace("\\\n", " ")
    app = "hipo.app.perf_command"
    commands = [line.split(app, 1)[1] for line in text.splitlines() if app in line]
    return [[t for t in c.split() if re.match(r"^perf[./]\w[\w.\-/]*=[^$\"]+$", t)] for c in commands]


@pytest.mark.slow  # a composition per perf command
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_gpu_perf_commands_compose_and_their_variants_validate(script: Path) -> None:
    from hipo.app.perf_command import to_perf_config
    from hipo.config.register import register_configs
    from hipo.perf.config import check_variant

    register_configs()
    for overrides in _perf_overrides(script):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            perf = to_perf_config(compose("perf", overrides=overrides))
        assert perf.device == "cuda" and perf.suite.variants, overrides
        for name, variant in perf.suite.variants.items():
            check_variant(name, variant)
