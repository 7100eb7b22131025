"""`hipo train -m` against a real `mlflow server` (SQLite behind it, proxied artifacts); artifact roots per store."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from hipo.tracking.store import experiment_artifact_location, is_server_uri

SERVER_START_S = 120


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, server: subprocess.Popen[bytes], deadline_s: float) -> None:
    """Polls ``<url>/health`` until it answers OK; fails if the server exits or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert server.poll() is None, f"mlflow server exited with {server.returncode}"
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    pytest.fail(f"mlflow server at {url} did not answer /health within {deadline_s} s")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop(server: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
    """Terminates the server's process group (uvicorn, its workers, the job runner); kills what outlives the grace."""
    if _group_alive(server.pid):
        os.killpg(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while _group_alive(server.pid) and time.monotonic() < deadline:
        server.poll()  # reaps the leader once it exits, so the group can disappear
        time.sleep(0.1)
    if _group_alive(server.pid):
        os.killpg(server.pid, signal.SIGKILL)
    server.wait(timeout=grace_s)


@pytest.fixture
def mlflow_server(tmp_path: Path, mlflow_template_db: Path) -> Iterator[str]:
    """A local ``mlflow server`` (one worker, a migrated SQLite store) on a free port; yields its URL, then stops it."""
    (tmp_path / "server").mkdir()
    shutil.copyfile(mlflow_template_db, tmp_path / "server" / "mlflow.db")
    port = _free_port()
    log_file = tmp_path / "server.log"
    command = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{tmp_path / 'server' / 'mlflow.db'}",
        "--artifacts-destination",
        str(tmp_path / "server" / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with open(log_file, "wb") as log:
        server = subprocess.Popen(command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, server, SERVER_START_S)
        yield url
    except BaseException:
        print(log_file.read_text()[-4000:])
        raise
    finally:
        _stop(server)


@pytest.mark.slow  # ~75 s on 2 cores: the server starts in ~15 s, the two-job sweep takes ~55 s
def test_a_sweep_against_a_tracking_server_groups_its_runs_and_uploads_artifacts(
    tmp_path: Path, mlflow_server: str, isolated_data_cache: Path
) -> None:
    command = [
        sys.executable,
        "-m",
        "hipo.cli",
        "train",
        "-m",
        "model=tiny",
        "seed=0,1",
        "trainer.max_steps=2",
        "trainer.enable_progress_bar=false",
        "trainer.checkpoint_every_n_steps=0",
        "data.source.num_pairs=16",
        "data.val_source.num_pairs=8",
        "logger.experiment_name=server-test",
        f"logger.tracking_uri={mlflow_server}",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
    ]
    env = {**os.environ, "HIPO_CACHE": str(isolated_data_cache)}
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("server-test")
    assert experiment.artifact_location.startswith("mlflow-artifacts:"), experiment.artifact_location
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("hipo.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children)
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    for child in children:
        resolved = Path(client.download_artifacts(child.info.run_id, "config/resolved.yaml", str(tmp_path / "dl")))
        assert "server-test" in resolved.read_text()
    assert not (tmp_path / "mlruns").exists(), "artifacts were written to the client's disk, not the server"
    assert list((tmp_path / "server" / "artifacts").rglob("resolved.yaml"))


# ------------------------------------------------------------------------------------------------------ unit tests
@pytest.mark.parametrize(
    ("tracking_uri", "artifact_location", "expected"),
    [
        ("http://host:5000", "mlruns", None),
        ("https://host", "/shared/mlruns", None),
        ("http://host:5000", "file:///shared/mlruns", None),
        ("http://host:5000", "s3://bucket/mlruns", "s3://bucket/mlruns"),
        ("http://host:5000", "gs://bucket/x", "gs://bucket/x"),
        ("http://host:5000", "mlflow-artifacts:/team", "mlflow-artifacts:/team"),
        ("http://host:5000", None, None),
        ("sqlite:///mlflow.db", "", None),
        ("sqlite:///mlflow.db", "s3://bucket/mlruns", "s3://bucket/mlruns"),
        ("sqlite:///mlflow.db", "file:///shared/mlruns", "file:///shared/mlruns"),
    ],
)
def test_a_tracking_server_gets_no_local_artifact_location(
    tracking_uri: str, artifact_location: str | None, expected: str | None
) -> None:
    assert experiment_artifact_location(tracking_uri, artifact_location) == expected


def test_a_local_store_gets_an_absolute_file_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert experiment_artifact_location("sqlite:///mlflow.db", "mlruns") == (tmp_path / "mlruns").as_uri()
    assert is_server_uri("HTTP://host") and is_server_uri("https://h") and not is_server_uri("sqlite:///a.db")
