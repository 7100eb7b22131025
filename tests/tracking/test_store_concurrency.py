"""Many processes on one new SQLite store at once: schema under a file lock, experiment race, no lost metric.

The child processes are released together by a barrier file. To see the race the lock prevents, run this module
with ``HIPO_TEST_DISABLE_STORE_LOCK=1``: the children then skip ``prepare_store`` and some crash in MLflow's
schema migration.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, RESOURCE_ALREADY_EXISTS
from mlflow.tracking import MlflowClient

from hipo.tracking import store
from hipo.tracking.store import get_or_create_experiment, lock_path, prepare_store, sqlite_path

PROCESSES = 6
STEPS = 20
KEYS = ("train/loss", "train/margin", "train/accuracy")

CHILD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path

    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    import hipo.tracking.store
    from hipo.tracking.run import tracked_run

    uri, index, barrier, steps = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    keys = sys.argv[5].split(",")
    if os.environ.get("HIPO_TEST_DISABLE_STORE_LOCK"):
        hipo.tracking.store.prepare_store = lambda tracking_uri: None
    (barrier / f"ready-{index}").touch()
    deadline = time.monotonic() + 120
    while not (barrier / "go").exists():
        if time.monotonic() > deadline:
            sys.exit("never released")
        time.sleep(0.002)
    params = {"model": {"name": "tiny", "hidden": 64}, "loss": {"beta": 0.2}, "seed": index}
    tags = {"hipo.test": "concurrency"}
    artifacts = str(barrier / "mlruns")
    with tracked_run(uri, "concurrent", f"proc{index}", tags, params=params, artifact_location=artifacts) as run_id:
        client = MlflowClient(uri)
        client.log_dict(run_id, params, "config/resolved.yaml")
        for step in range(steps):
            now = int(time.time() * 1000)
            client.log_batch(run_id, metrics=[Metric(k, 100.0 * index + step, now, step) for k in keys])
    """
)


def _launch_together(uri: str, tmp_path: Path, processes: int) -> list[subprocess.CompletedProcess[str]]:
    """Starts ``processes`` children, releases them at once when all are ready, waits for all of them."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    args = [uri, "", str(barrier), str(STEPS), ",".join(KEYS)]
    children = []
    for index in range(processes):
        args[1] = str(index)
        cmd = [sys.executable, str(script), *args]
        children.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        deadline = time.monotonic() + 120
        while len(list(barrier.glob("ready-*"))) < processes:
            assert time.monotonic() < deadline, "children did not start in 120 s"
            assert all(c.poll() is None for c in children), "a child died before the barrier"
            time.sleep(0.05)
        (barrier / "go").touch()
        results = []
        for child in children:
            out, err = child.communicate(timeout=180)
            results.append(subprocess.CompletedProcess(child.args, child.returncode, out, err))
        return results
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()


@pytest.mark.slow  # 6 Python processes importing MLflow
def test_processes_started_together_on_a_new_sqlite_store_all_finish_and_lose_no_metric(tmp_path: Path) -> None:
    db = tmp_path / "store" / "mlflow.db"
    uri = f"sqlite:///{db}"
    assert not db.exists()

    results = _launch_together(uri, tmp_path, PROCESSES)

    failed = [f"child {i} exit {r.returncode}:\n{r.stderr[-1500:]}" for i, r in enumerate(results) if r.returncode]
    assert not failed, "\n\n".join(failed)
    client = MlflowClient(uri)
    experiments = [e for e in client.search_experiments() if e.name == "concurrent"]
    assert len(experiments) == 1
    runs = client.search_runs([experiments[0].experiment_id])
    assert sorted(r.info.run_name for r in runs) == sorted(f"proc{i}" for i in range(PROCESSES))
    assert all(r.info.status == "FINISHED" for r in runs)
    for run in runs:
        index = int(run.info.run_name.removeprefix("proc"))
        assert run.data.params["seed"] == str(index)
        for key in KEYS:
            history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
            assert history == [(step, 100.0 * index + step) for step in range(STEPS)], (run.info.run_name, key)
        assert [a.path for a in client.list_artifacts(run.info.run_id, "config")] == ["config/resolved.yaml"]
    assert lock_path(db).exists()


# ------------------------------------------------------------------------------------------------------ unit tests
def test_sqlite_path_resolves_files_and_ignores_other_stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert sqlite_path("sqlite:///mlflow.db") == tmp_path / "mlflow.db"
    assert sqlite_path(f"sqlite:///{tmp_path}/a/b.db") == tmp_path / "a" / "b.db"
    assert sqlite_path("sqlite://") is None
    assert sqlite_path("sqlite:///:memory:") is None
    assert sqlite_path("http://127.0.0.1:5000") is None
    assert sqlite_path("postgresql://u@host/db") is None
    assert lock_path(tmp_path / "mlflow.db") == tmp_path / "mlflow.db.lock"


@pytest.mark.slow  # runs MLflow's schema migrations on a new store
def test_prepare_store_migrates_once_per_process_under_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked: list[Path] = []
    real_lock = store.file_lock

    def counting_lock(path: Path):  # type: ignore[no-untyped-def]
        locked.append(path)
        return real_lock(path)

    monkeypatch.setattr(store, "file_lock", counting_lock)
    db = tmp_path / "new" / "mlflow.db"
    prepare_store(f"sqlite:///{db}")
    prepare_store(f"sqlite:///{db}")
    prepare_store("http://127.0.0.1:1")  # a server: nothing to do, nothing contacted
    assert locked == [lock_path(db)]
    assert db.is_file()
    assert MlflowClient(f"sqlite:///{db}").get_experiment("0").name == "Default"


class _RacingClient:
    """A client that loses the race: the experiment is absent when looked up, present when created."""

    def __init__(self, error_code: int) -> None:
        self.error_code = error_code
        self.lookups = 0

    def get_experiment_by_name(self, name: str) -> object | None:
        self.lookups += 1
        return None if self.lookups == 1 else type("Experiment", (), {"experiment_id": "7"})()

    def create_experiment(self, name: str, artifact_location: str | None = None) -> str:
        raise MlflowException(f"experiment {name} exists", error_code=self.error_code)


def test_get_or_create_experiment_returns_the_experiment_another_process_created() -> None:
    client = _RacingClient(RESOURCE_ALREADY_EXISTS)
    assert get_or_create_experiment(client, "x", None) == "7"  # type: ignore[arg-type]
    with pytest.raises(MlflowException, match="exists"):
        get_or_create_experiment(_RacingClient(INTERNAL_ERROR), "x", None)  # type: ignore[arg-type]


@pytest.mark.slow  # an MLflow store (its schema migrations, the first time)
def test_get_or_create_experiment_on_a_real_store(mlflow_uri: str) -> None:
    client = MlflowClient(mlflow_uri)
    first = get_or_create_experiment(client, "twice", None)
    assert get_or_create_experiment(client, "twice", None) == first
