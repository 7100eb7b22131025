"""One MLflow run per job: created after setup succeeded, closed FINISHED, FAILED or KILLED, never left RUNNING."""

from __future__ import annotations

import contextlib
import logging
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from hipo.tracking.params import flatten_config

log = logging.getLogger(__name__)


def git_commit(cwd: str | Path | None = None) -> str:
    """The current git commit (with ``-dirty`` when the tree has changes), or ``unknown`` outside a repository."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def ensure_experiment(tracking_uri: str, experiment_name: str, artifact_location: str | None) -> str:
    """The id of ``experiment_name`` in the store at ``tracking_uri``, created (with its artifact root) if needed."""
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if artifact_location:
        location = Path(artifact_location).expanduser().resolve().as_uri()
    return client.create_experiment(experiment_name, artifact_location=location)


@contextlib.contextmanager
def tracked_run(
    tracking_uri: str,
    experiment_name: str,
    run_name: str | None,
    tags: Mapping[str, str],
    params: Mapping[str, Any] | None = None,
    artifact_location: str | None = None,
    parent_run_id: str | None = None,
) -> Iterator[str]:
    """Starts an MLflow run, yields its id and ends it with the status the body earned.

    The run ends FINISHED when the body returns, KILLED on KeyboardInterrupt and FAILED on any other exception
    (which is re-raised with the run id in the log).
    """
    experiment_id = ensure_experiment(tracking_uri, experiment_name, artifact_location)
    all_tags = dict(tags)
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    client = MlflowClient(tracking_uri)
    run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
    run_id = run.info.run_id
    if params:
        flat = flatten_config(params)
        items = list(flat.items())
        for start in range(0, len(items), 100):  # MLflow's batch limit is 100 params per call
            chunk = items[start : start + 100]
            client.log_batch(run_id, params=[mlflow.entities.Param(k, v) for k, v in chunk])
    status = RunStatus.to_string(RunStatus.FINISHED)
    try:
        yield run_id
    except KeyboardInterrupt:
        status = RunStatus.to_string(RunStatus.KILLED)
        raise
    except BaseException:
        status = RunStatus.to_string(RunStatus.FAILED)
        log.error("run %s failed; it is marked FAILED in MLflow", run_id)
        raise
    finally:
        client.set_terminated(run_id, status)
