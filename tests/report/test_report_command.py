"""`hipo report` as a user runs it: the report goes where it is asked, Hydra's job log into an output folder."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hipo.cli import main


@pytest.mark.slow  # `hipo report` with its plots
def test_report_command_writes_no_log_into_the_working_directory(
    fake_sweep: Callable[..., dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep = fake_sweep()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # main() leaves the command's argv behind
    main(
        [
            "report",
            f"sweep_id={sweep['sweep_id']}",
            f"logger.tracking_uri={sweep['uri']}",
            "out_dir=report",
            "n_resamples=200",
            "log_to_parent=false",
        ]
    )
    assert (work / "report" / "report.md").is_file()
    assert sorted(p.name for p in work.iterdir()) == ["outputs", "report"]  # no cli.log, no .hydra/ here
    (log,) = work.glob("outputs/report/*/*/*.log")  # the job log lies in the command's own output folder
    assert "report written to report" in log.read_text()
