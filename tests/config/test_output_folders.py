"""Every command's Hydra files (the job log, ``.hydra/``) go into an output folder, never the working directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from hipo.cli import COMMANDS, config_dir
from hipo.config import register_configs

ROOTS = sorted(p.stem for p in Path(config_dir()).glob("*.yaml"))


def test_every_command_has_a_root_config_here() -> None:
    assert sorted({root for _, _, root in COMMANDS.values()}) == ROOTS


@pytest.mark.slow  # a composition per command
@pytest.mark.parametrize("root", ROOTS)
def test_hydra_run_and_sweep_folders_are_output_folders(root: str) -> None:
    register_configs()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        hydra = compose(root, return_hydra_config=True).hydra
    for folder in (Path(hydra.run.dir), Path(hydra.sweep.dir)):
        assert folder.parts[0] in ("outputs", "multirun") and len(folder.parts) > 2, f"{root}: {folder}"
    assert hydra.job.chdir is False  # paths on the command line stay relative to where the command runs
