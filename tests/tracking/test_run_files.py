"""The run record of an output folder and the Lightning logger of a resumed run, without an MLflow store: which
records a resumed job ignores, and which metrics the logger does not send again. (Against a real store:
tests/training/test_train_app.py and tests/training/test_resume.py.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest
from lightning.pytorch.loggers import MLFlowLogger

from hipo.tracking.lightning_logger import AttachedMLFlowLogger
from hipo.tracking.run_record import RUN_RECORD, RunRecord, run_to_continue, write_run_record

URI = "sqlite:///store.db"
SERVER = "http://127.0.0.1:1"  # the logger is built against a server that is never contacted


def test_a_written_record_is_read_back(tmp_path: Path) -> None:
    write_run_record(tmp_path, RunRecord("abc123", URI, "hipo"))
    assert json.loads((tmp_path / RUN_RECORD).read_text()) == {
        "run_id": "abc123",
        "tracking_uri": URI,
        "experiment_name": "hipo",
    }


def test_no_record_a_broken_one_or_one_of_another_store_starts_a_new_run(tmp_path: Path) -> None:
    assert run_to_continue(tmp_path, URI) is None  # no record
    (tmp_path / RUN_RECORD).write_text("{not json")
    assert run_to_continue(tmp_path, URI) is None
    (tmp_path / RUN_RECORD).write_text(json.dumps({"run_id": "abc123"}))  # fields missing
    assert run_to_continue(tmp_path, URI) is None
    write_run_record(tmp_path, RunRecord("abc123", "sqlite:///other.db", "hipo"))
    assert run_to_continue(tmp_path, URI) is None  # the store is never opened


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[dict[str, float], int | None]]:
    """What the logger passes on to Lightning's ``MLFlowLogger.log_metrics`` (which would write to the store)."""
    calls: list[tuple[dict[str, float], int | None]] = []

    def log_metrics(self: MLFlowLogger, metrics: Mapping[str, float], step: int | None = None) -> None:
        calls.append((dict(metrics), step))

    monkeypatch.setattr(MLFlowLogger, "log_metrics", log_metrics)
    return calls


def test_a_resumed_run_does_not_record_a_step_twice(sent: list) -> None:
    logger = AttachedMLFlowLogger(
        {"train/loss": 4, "train/margin": 2}, experiment_name="hipo", tracking_uri=SERVER, run_id="abc123"
    )
    logger.log_metrics({"train/loss": 1.0, "train/margin": 2.0}, step=3)
    logger.log_metrics({"train/loss": 1.0, "train/margin": 2.0}, step=4)
    logger.log_metrics({"train/loss": 0.5, "train/margin": 2.5}, step=5)
    assert sent == [
        ({"train/margin": 2.0}, 3),
        ({"train/margin": 2.0}, 4),
        ({"train/loss": 0.5, "train/margin": 2.5}, 5),
    ]
    logger.finalize("success")  # the run stays open: tracked_run closes it


def test_a_new_run_records_everything(sent: list) -> None:
    logger = AttachedMLFlowLogger(experiment_name="hipo", tracking_uri=SERVER, run_id="abc123")
    logger.log_metrics({"train/loss": 1.0}, step=0)
    assert sent == [({"train/loss": 1.0}, 0)]
