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
    """The id of ``experiment_name`` in the store at ``tracking_uri``, created (with its artifact root) if needed.

    Safe when many processes start at once: a new SQLite store is created under a file lock, and a race to create
    the experiment returns the winner's (see ``hipo.tracking.store``). A tracking server gets no local artifact root.
    """
    from hipo.tracking.store import experiment_artifact_location, get_or_create_experiment, prepare_store

    prepare_store(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    location = experiment_artifact_location(tracking_uri, artifact_location)
    return get_or_create_experiment(MlflowClient(tracking_uri), experiment_name, location)


@contextlib.contextmanager
def tracked_run(
    tracking_uri: str,
    experiment_name: str,
    run_name: str | None,
    tags: Mapping[str, str],
    params: Mapping[str, Any] | None = None,
    artifact_location: str | None = None,
    parent_run_id: str | None = None,
    continue_run_id: str | None = None,
) -> Iterator[str]:
    """Starts an MLflow run (or reopens ``continue_run_id``), yields its id and ends it with the status it earned.

    FINISHED when the body returns; KILLED when a signal stopped the job (:class:`~hipo.errors.JobInterrupted`,
    ``KeyboardInterrupt``); FAILED on any other exception, whose one-line message is kept as the tag
    ``hipo.error`` and whose traceback as the artifact ``error.txt``. The exception is re-raised.

    Args:
        continue_run_id: the run of an interrupted job that this job resumes: it is set RUNNING again and keeps its
            params (not logged again) and history; ``tags`` are updated and ``hipo.resumes`` counts the resumptions.
    """
    if continue_run_id:
        from hipo.tracking.store import prepare_store

        prepare_store(tracking_uri)
        client = MlflowClient(tracking_uri)
        run_id = continue_run_id
        resumes = int(client.get_run(run_id).data.tags.get("hipo.resumes", "0")) + 1
        client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        for key, value in {**tags, "hipo.resumes": str(resumes)}.items():
            client.set_tag(run_id, key, value)
    else:
        run_id = _create_run(tracking_uri, experiment_name, run_name, tags, params, artifact_location, parent_run_id)
        client = MlflowClient(tracking_uri)
    status = RunStatus.to_string(RunStatus.FINISHED)
    try:
        yield run_id
    except BaseException as error:
        status = RunStatus.to_string(run_status_for(error))
        if status == "FAILED":
            record_error(client, run_id, error)
            log.error("run %s failed; it is marked FAILED in MLflow", run_id)
        raise
    finally:
        client.set_terminated(run_id, status)


def _create_run(
    tracking_uri: str,
    experiment_name: str,
    run_name: str | None,
    tags: Mapping[str, str],
    params: Mapping[str, Any] | None,
    artifact_location: str | None,
    parent_run_id: str | None,
) -> str:
    """A new RUNNING run with its tags and flattened params."""
    experiment_id = ensure_experiment(tracking_uri, experiment_name, artifact_location)
    all_tags = dict(tags)
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    client = MlflowClient(tracking_uri)
    run_id = client.create_run(experiment_id, run_name=run_name, tags=all_tags).info.run_id
    if params:
        items = list(flatten_config(params).items())
        for start in range(0, len(items), 100):  # MLflow's batch limit is 100 params per call
            chunk = items[start : start + 100]
            client.log_batch(run_id, params=[mlflow.entities.Param(k, v) for k, v in chunk])
    return run_id


def run_status_for(error: BaseException) -> int:
    """KILLED for a stop by signal, FINISHED for a clean ``SystemExit(0)``, FAILED for anything else."""
    from hipo.errors import JobInterrupted

    if isinstance(error, (JobInterrupted, KeyboardInterrupt)):
        return RunStatus.KILLED
    if isinstance(error, SystemExit) and error.code in (0, None):
        return RunStatus.FINISHED
    return RunStatus.FAILED


def record_error(client: MlflowClient, run_id: str, error: BaseException) -> None:
    """The error on its run: tag ``hipo.error`` (type and message, one line) and artifact ``error.txt``."""
    import traceback

    from hipo.errors import one_line

    try:
        client.set_tag(run_id, "hipo.error", f"{type(error).__name__}: {one_line(error, limit=4000)}")
        client.log_text(run_id, "".join(traceback.format_exception(error)), "error.txt")
    except Exception as failure:  # never hide the job's own error behind a tracking error
        log.error("could not record the error on run %s: %s", run_id, failure)


def record_failed_run(
    tracking_uri: str,
    experiment_name: str,
    run_name: str | None,
    tags: Mapping[str, str],
    error: BaseException,
    params: Mapping[str, Any] | None = None,
    artifact_location: str | None = None,
    parent_run_id: str | None = None,
) -> str:
    """A FAILED run holding ``error``, for a job that failed before its run existed (a sweep job with bad data)."""
    run_id = _create_run(tracking_uri, experiment_name, run_name, tags, params, artifact_location, parent_run_id)
    client = MlflowClient(tracking_uri)
    record_error(client, run_id, error)
    client.set_terminated(run_id, RunStatus.to_string(run_status_for(error)))
    return run_id
