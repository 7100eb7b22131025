"""`hipo pipeline`'s orchestration with its steps replaced: what it prepares, which commands it starts, in which
order and with which overrides, and how a failed step ends it. (The real pipeline: tests/llm/test_paper_pipeline.py.)
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from omegaconf import DictConfig, OmegaConf

from hipo.app import child_steps, pipeline
from hipo.errors import ConfigError, JobInterrupted

TRACKING = "logger.tracking_uri=sqlite:///runs.db"
OVERRIDES = ["experiment=demo", "method=dpo,hipo", TRACKING, "hydra.run.dir=/elsewhere", "output_dir=/elsewhere/out"]
CHILD = [sys.executable, "-m", "hipo.cli"]


class Steps:
    """What the pipeline did, in order: ``("prepare", cfg)`` and the argv of each child command it started. The
    children exit with ``exits[step name]`` (default 0)."""

    def __init__(self) -> None:
        self.done: list[Any] = []
        self.exits: dict[str, int] = {}

    def prepare(self, cfg: DictConfig) -> dict[str, int]:
        self.done.append(("prepare", cfg))
        return {"pairs": 3}

    def popen(self, argv: list[str], **kwargs: Any) -> _Child:
        self.done.append(argv)
        return _Child(self.exits.get(argv[3], 0))


class _Child:
    """A finished child process with an exit code; ``interrupt`` makes its first ``wait`` raise a stop."""

    def __init__(self, code: int, interrupt: BaseException | None = None) -> None:
        self.code, self.interrupt, self.signals, self.waits = code, interrupt, [], 0

    def wait(self) -> int:
        self.waits += 1
        if self.interrupt is not None and self.waits == 1:
            raise self.interrupt
        return self.code

    def send_signal(self, signum: int) -> None:
        self.signals.append(signum)


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> Steps:
    steps = Steps()
    monkeypatch.setattr(pipeline, "_task_overrides", lambda: list(OVERRIDES))
    monkeypatch.setattr(pipeline, "prepare_once", steps.prepare)
    monkeypatch.setattr(child_steps.subprocess, "Popen", steps.popen)
    return steps


def _cfg(tmp_path: Path, experiment: str | None = "demo") -> DictConfig:
    return OmegaConf.create({"experiment": experiment, "output_dir": str(tmp_path / "out")})


def test_prepare_then_the_training_sweep_then_the_report(tmp_path: Path, steps: Steps) -> None:
    cfg = _cfg(tmp_path)
    result = pipeline.pipeline_command(cfg)
    prepare, train, report = steps.done
    assert prepare == ("prepare", cfg)
    # the sweep gets every override but this command's own folders
    assert train == [*CHILD, "train", "-m", "experiment=demo", "method=dpo,hipo", TRACKING]
    # the report: the experiment, its folder and the tracking overrides only (it knows no `method`)
    report_dir = tmp_path / "out" / "report"
    assert report == [*CHILD, "report", "experiment=demo", f"out_dir={report_dir}", TRACKING]
    assert result["stats"] == {"pairs": 3} and result["report_dir"] == str(report_dir)
    assert set(result["timings"]) == {"prepare_s", "train_s", "report_s"}


def test_a_failed_step_ends_the_pipeline_with_its_exit_code(
    tmp_path: Path, steps: Steps, capsys: pytest.CaptureFixture[str]
) -> None:
    steps.exits["train"] = 3
    with pytest.raises(SystemExit) as exit_:
        pipeline.pipeline_command(_cfg(tmp_path))
    assert exit_.value.code == 3
    assert [step[3] for step in steps.done[1:]] == ["train"]  # no report after a failed sweep
    assert "step train failed (exit 3)" in capsys.readouterr().err


def test_without_an_experiment_nothing_runs(tmp_path: Path, steps: Steps) -> None:
    with pytest.raises(ConfigError, match="experiment=NAME"):
        pipeline.pipeline_command(_cfg(tmp_path, experiment=None))
    assert steps.done == []


@pytest.mark.parametrize(
    ("stop", "forwarded"), [(JobInterrupted(signal.SIGTERM), signal.SIGTERM), (KeyboardInterrupt(), signal.SIGINT)]
)
def test_a_stop_while_a_step_runs_is_passed_on_once_and_waited_for(monkeypatch, stop, forwarded) -> None:
    child = _Child(143, interrupt=stop)
    monkeypatch.setattr(child_steps.subprocess, "Popen", lambda argv, **kwargs: child)
    with pytest.raises(type(stop)):
        child_steps.run_step("iterate", "round 0 train", ["train"])
    assert child.signals == [forwarded] and child.waits == 2  # the step stopped before this command did
