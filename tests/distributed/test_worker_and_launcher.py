"""The entry point of a worker rank (``python -m hipo.distributed.worker``) with the training job replaced: it runs
the job of the config the launcher put in its environment, and its exit code follows the ``hipo`` command's
conventions; and the launcher's port and thread helpers. (Real worker processes: tests/training/test_distributed.py.)
"""

from __future__ import annotations

import logging
import socket

import pytest
from omegaconf import DictConfig, OmegaConf

from hipo.app import train as train_app
from hipo.distributed import worker
from hipo.distributed.launcher import CONFIG_ENV, cpu_threads_per_process, free_port
from hipo.errors import USER_ERROR_EXIT_CODE, ConfigError

CONFIG = {"seed": 3, "model": {"name": "tiny"}, "trainer": {"devices": 2}}


@pytest.fixture
def jobs(monkeypatch: pytest.MonkeyPatch) -> list[DictConfig]:
    """The configs the worker trained on, its config in the environment as the launcher puts it (YAML), rank 1."""
    seen: list[DictConfig] = []
    monkeypatch.setenv(CONFIG_ENV, OmegaConf.to_yaml(OmegaConf.create(CONFIG)))
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(train_app, "train", seen.append)
    return seen


def test_the_worker_trains_the_job_of_its_environment(jobs: list[DictConfig]) -> None:
    worker.main()
    (cfg,) = jobs
    assert OmegaConf.to_container(cfg) == CONFIG


@pytest.mark.parametrize(
    ("error", "code"), [(ConfigError("trainer.devices: 3 > 2"), USER_ERROR_EXIT_CODE), (RuntimeError("boom"), 1)]
)
def test_a_failed_job_exits_with_the_code_of_its_error(
    error: Exception, code: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, jobs: list
) -> None:
    def fail(cfg: DictConfig) -> None:
        raise error

    monkeypatch.setattr(train_app, "train", fail)
    with caplog.at_level(logging.ERROR, logger="hipo"), pytest.raises(SystemExit) as exit_:
        worker.main()
    assert exit_.value.code == code
    # a bug (exit 1) is logged with its traceback by the rank; a user error is left to rank 0 to print
    logged = [r for r in caplog.records if r.getMessage() == "rank 1 failed"]
    assert len(logged) == (code == 1) and all(r.exc_info for r in logged)


def test_a_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))


def test_the_cores_are_shared_out_unless_omp_num_threads_says(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert [cpu_threads_per_process(n) for n in (1, 2, 3, 16)] == [8, 4, 2, 1]
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu_threads_per_process(2) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "0")  # not a thread count: ignored
    assert cpu_threads_per_process(2) == 4
