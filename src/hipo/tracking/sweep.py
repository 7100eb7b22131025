"""Hydra multirun <-> MLflow: one PARENT run per sweep, the jobs as nested child runs, names that say what differs.

Wiring (in the root config)::

    hydra:
      callbacks:
        mlflow_sweep:
          _target_: hipo.tracking.sweep.MLflowSweepCallback
          tracking_uri: ${logger.tracking_uri}
          experiment_name: ${logger.experiment_name}
          artifact_location: ${logger.artifact_location}

The callback creates the parent run in ``on_multirun_start`` and publishes its id in two places: the environment
variable ``HIPO_MLFLOW_PARENT_RUN_ID`` (inherited by joblib / submitit workers started afterwards) and the file
``<sweep dir>/mlflow_parent.json`` (found through ``HydraConfig`` by jobs on other machines that share the sweep
dir). Each job records ``<job dir>/hipo_job_status.json`` in ``on_job_end``: FAILED when Hydra saw an exception or
when the job returned a :class:`hipo.cli.JobFailure` (the ``hipo`` command turns a job's error into one, so the
sweep goes on) or a NaN objective (an optimizing sweeper's failed trial). ``on_multirun_end`` reads those files and
the children's MLflow statuses, logs a summary and closes the parent: FINISHED when every job completed and every
child run FINISHED, FAILED otherwise, with the tag ``hipo.sweep_failed_jobs`` (a partial sweep is still
reportable: ``hipo report`` lists failed children with their errors and leaves them out of the statistics). The
summary is kept for the command (:func:`last_sweep_summary`), which lists the failures and exits 1. If the
process dies between the two hooks, an ``atexit`` hook marks the parent FAILED, so a parent is never left RUNNING.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import math
import os
import re
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

PARENT_ENV = "HIPO_MLFLOW_PARENT_RUN_ID"
VARYING_ENV = "HIPO_SWEEP_VARYING"
PARENT_FILE = "mlflow_parent.json"
JOB_STATUS_FILE = "hipo_job_status.json"
SWEEP_ROLE_TAG = "hipo.role"
SWEEP_ROLE = "sweep"
_MAX_NAME = 80
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_SKIPPED_PREFIXES = ("hydra.", "hydra/", "logger.", "logger/")
_last_summary: dict[str, Any] | None = None


def last_sweep_summary() -> dict[str, Any] | None:
    """The summary of the last sweep this process ran (None if it ran none), see :func:`sweep_summary`."""
    return _last_summary


def _sanitize(text: str, limit: int = 32) -> str:
    """``text`` reduced to ``[A-Za-z0-9._-]`` (other runs become ``_``), at most ``limit`` characters."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")
    return cleaned[:limit]


def _override_key_value(override: str) -> tuple[str, str] | None:
    """``(key, value)`` of one override string (``+``/``++`` prefixes dropped); None for deletions and bare keys."""
    text = override.strip()
    if text.startswith("~") or "=" not in text:
        return None
    key, value = text.split("=", 1)
    return key.lstrip("+").strip(), value.strip().strip("'\"")


def override_token(key: str, value: str) -> str:
    """The short name part of one override.

    Group choices become their value (``loss=hipo`` -> ``hipo``, ``experiment=ablation_rq`` -> ``ablation_rq``),
    numbers are glued to the leaf key (``seed=1`` -> ``seed1``, ``optim.lr=1e-5`` -> ``lr1e-5``) and other values
    of nested keys become ``<leaf>_<value>`` (``loss.weights=learned`` -> ``weights_learned``).
    """
    leaf = re.split(r"[./@]", key)[-1]
    clean = _sanitize(value)
    if _NUMBER.match(value):
        return f"{_sanitize(leaf, 16)}{clean}"
    if "." not in key and "@" not in key:
        return clean  # a config group choice (loss=hipo) or a top-level string value
    return f"{_sanitize(leaf, 16)}_{clean}"


def child_run_name(overrides: Sequence[str], base: str, varying: Iterable[str] | None = None) -> str:
    """A short run name for one sweep job that says what differs from its siblings.

    Args:
        overrides: the job's Hydra task overrides, e.g. ``["loss=hipo", "seed=1", "trainer.max_steps=10"]``.
        base: the method label that starts the name (e.g. ``hipo`` or ``hipo-learned``); override values already
            contained in it as ``-``-separated words are not repeated (``loss.weights=learned`` adds nothing to
            ``hipo-learned``).
        varying: keys that vary across the sweep; only their overrides are named. None: the keys recorded by the
            running sweep (``HIPO_SWEEP_VARYING``, set by :class:`MLflowSweepCallback`), else every override.
            ``hydra.*`` and ``logger.*`` overrides are never named.

    Returns:
        e.g. ``hipo-seed1`` for ``["loss=hipo", "seed=1"]`` with base ``hipo``; names longer than 80 characters are
        cut and end in a 6-hex digest of the overrides, so they stay unique.
    """
    if varying is None:
        recorded = os.environ.get(VARYING_ENV)
        varying = json.loads(recorded) if recorded else None
    keys = None if varying is None else {k.lstrip("+") for k in varying}
    base_clean = _sanitize(base, _MAX_NAME) or "run"
    base_words = set(base_clean.split("-"))
    parts = [base_clean]
    for override in overrides:
        parsed = _override_key_value(override)
        if parsed is None:
            continue
        key, value = parsed
        if key.startswith(_SKIPPED_PREFIXES) or (keys is not None and key not in keys):
            continue
        token = override_token(key, value)
        said_by_base = token in base_words or (not _NUMBER.match(value) and _sanitize(value) in base_words)
        if token and not said_by_base and token not in parts:
            parts.append(token)
    name = "-".join(parts)
    if len(name) > _MAX_NAME:
        digest = hashlib.sha1("\x00".join(sorted(overrides)).encode()).hexdigest()[:6]
        name = f"{name[: _MAX_NAME - 7]}-{digest}"
    return name


def varying_keys(sweep_overrides: Sequence[str]) -> list[str]:
    """Keys whose override is a sweep (``a,b``, ``range(…)``, ``choice(…)``, ``glob(…)``), in order."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(sweep_overrides))
    return [o.key_or_group for o in parsed if o.is_sweep_override()]


def parent_run_id() -> str | None:
    """The running sweep's parent run id: ``$HIPO_MLFLOW_PARENT_RUN_ID``, else ``<sweep dir>/mlflow_parent.json``.

    Returns None outside a sweep (no variable, and Hydra not initialized or not in multirun mode, or no file).
    """
    from_env = os.environ.get(PARENT_ENV)
    if from_env:
        return from_env
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if str(hydra_cfg.mode) != "RunMode.MULTIRUN":
        return None
    record = read_parent_file(Path(str(hydra_cfg.sweep.dir)))
    return None if record is None else str(record["run_id"])


def read_parent_file(sweep_dir: Path) -> dict[str, Any] | None:
    """The parent record ``<sweep_dir>/mlflow_parent.json``, or None if absent.

    Raises:
        ValueError: the file exists but is not a JSON object with a ``run_id`` (names the file).
    """
    path = Path(sweep_dir) / PARENT_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from err
    if not isinstance(record, dict) or not record.get("run_id"):
        raise ValueError(f"{path}: field 'run_id' is missing")
    return record


def sweep_id_of(run_id: str, tracking_uri: str) -> str | None:
    """The ``hipo.sweep_id`` tag of run ``run_id`` (a sweep's parent), or None if it has none."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri).get_run(run_id).data.tags.get("hipo.sweep_id")


class MLflowSweepCallback(Callback):
    """Groups a Hydra multirun under one MLflow parent run (see the module docstring for the protocol).

    Args:
        tracking_uri: MLflow store, e.g. ``sqlite:///mlflow.db``.
        experiment_name: MLflow experiment that holds the parent and its children.
        artifact_location: artifact root used if the experiment has to be created (None: MLflow's default).
    """

    def __init__(self, tracking_uri: str, experiment_name: str, artifact_location: str | None = None) -> None:
        self.tracking_uri = str(tracking_uri)
        self.experiment_name = str(experiment_name)
        self.artifact_location = None if artifact_location in (None, "") else str(artifact_location)
        self.run_id: str | None = None
        self.sweep_id: str | None = None
        self.varying: list[str] = []
        self._previous_env: dict[str, str | None] = {}
        self._closed = False

    # ----------------------------------------------------------------------------------------------- multirun hooks
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Creates the parent run, publishes its id (env var + ``<sweep dir>/mlflow_parent.json``)."""
        from mlflow.tracking import MlflowClient

        global _last_summary
        _last_summary = None
        from hipo.tracking.run import ensure_experiment, git_commit

        sweep_dir = Path(str(OmegaConf.select(config, "hydra.sweep.dir")))
        overrides = [str(o) for o in (OmegaConf.select(config, "hydra.overrides.task") or [])]
        experiment = OmegaConf.select(config, "hydra.runtime.choices.experiment", default=None)
        if experiment is None:
            experiment = OmegaConf.select(config, "experiment", default=None)
        label = str(experiment or OmegaConf.select(config, "hydra.job.name", default=None) or "sweep")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.sweep_id = f"{_sanitize(label, 40)}-{stamp}-{uuid.uuid4().hex[:6]}"
        experiment_id = ensure_experiment(self.tracking_uri, self.experiment_name, self.artifact_location)
        # what varies: sweeps on the command line and in `hydra.sweeper.params` (e.g. an experiment's own grid)
        params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
        param_overrides = [f"{key}={value}" for key, value in params.items()]
        try:
            varying = varying_keys(overrides)
            varying += [key for key in varying_keys(param_overrides) if key not in varying]
        except Exception as err:  # an override the grammar refuses: name nothing rather than fail the sweep
            log.warning("could not parse the sweep overrides %s: %s", overrides + param_overrides, err)
            varying = []
        tags = {
            "hipo.sweep_id": self.sweep_id,
            SWEEP_ROLE_TAG: SWEEP_ROLE,
            "hipo.overrides": " ".join(overrides),
            "hipo.sweep_varying": ",".join(varying),
            "hipo.sweep_dir": str(sweep_dir.resolve()),
            "hipo.git_commit": git_commit(),
        }
        if experiment:
            tags["hipo.experiment"] = str(experiment)
        run = MlflowClient(self.tracking_uri).create_run(
            experiment_id, run_name=f"sweep-{_sanitize(label, 40)}-{stamp}", tags=tags
        )
        self.run_id = run.info.run_id
        self._closed = False
        sweep_dir.mkdir(parents=True, exist_ok=True)
        record = {
            "run_id": self.run_id,
            "sweep_id": self.sweep_id,
            "tracking_uri": self.tracking_uri,
            "experiment_name": self.experiment_name,
            "experiment_id": experiment_id,
            "overrides": overrides,
            "varying": varying,
        }
        (sweep_dir / PARENT_FILE).write_text(json.dumps(record, indent=2) + "\n")
        self._previous_env = {name: os.environ.get(name) for name in (PARENT_ENV, VARYING_ENV)}
        os.environ[PARENT_ENV] = self.run_id
        os.environ[VARYING_ENV] = json.dumps(varying)
        self.varying = varying
        atexit.register(self._close_if_open)
        log.info("MLflow sweep parent run %s (sweep %s)", self.run_id, self.sweep_id)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        """Writes ``<job dir>/hipo_job_status.json`` (overrides, COMPLETED/FAILED, error) for the summary."""
        output_dir = OmegaConf.select(config, "hydra.runtime.output_dir", default=None)
        if not output_dir or str(OmegaConf.select(config, "hydra.mode", default="")) != "RunMode.MULTIRUN":
            return
        status, error = job_outcome(job_return)
        record = {
            "overrides": [str(o) for o in (getattr(job_return, "overrides", None) or [])],
            "status": status,
            "error": error,
            "job_num": OmegaConf.select(config, "hydra.job.num", default=None),
        }
        Path(str(output_dir)).mkdir(parents=True, exist_ok=True)
        (Path(str(output_dir)) / JOB_STATUS_FILE).write_text(json.dumps(record, indent=2) + "\n")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Logs the sweep summary into the parent and closes it FINISHED, or FAILED if any job or child failed."""
        if self.run_id is None:
            return
        sweep_dir = Path(str(OmegaConf.select(config, "hydra.sweep.dir")))
        summary = sweep_summary(self.tracking_uri, self.run_id, sweep_dir)
        summary["varying"] = list(self.varying)
        self._finish(summary)

    # ------------------------------------------------------------------------------------------------ internals
    def _finish(self, summary: dict[str, Any]) -> None:
        from mlflow.entities import Metric, RunStatus
        from mlflow.tracking import MlflowClient

        assert self.run_id is not None
        client = MlflowClient(self.tracking_uri)
        now = int(time.time() * 1000)
        counts = summary["counts"]
        client.log_batch(self.run_id, metrics=[Metric(f"sweep/{k}", float(v), now, 0) for k, v in counts.items()])
        client.log_dict(self.run_id, summary, "sweep/summary.json")
        client.log_text(self.run_id, format_summary(summary), "sweep/summary.md")
        client.set_tag(self.run_id, "hipo.sweep_failed_jobs", str(counts["jobs_failed"]))
        global _last_summary
        _last_summary = summary
        status = RunStatus.FINISHED if summary["ok"] else RunStatus.FAILED
        client.set_terminated(self.run_id, RunStatus.to_string(status))
        log.info("sweep %s: %s", self.sweep_id, format_summary(summary).splitlines()[0])
        self._closed = True
        for name, value in self._previous_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        atexit.unregister(self._close_if_open)

    def _close_if_open(self) -> None:
        """atexit: a sweep that died before ``on_multirun_end`` leaves its parent FAILED, never RUNNING."""
        if self._closed or self.run_id is None:
            return
        from mlflow.entities import RunStatus
        from mlflow.tracking import MlflowClient

        try:
            MlflowClient(self.tracking_uri).set_terminated(self.run_id, RunStatus.to_string(RunStatus.FAILED))
        except Exception as err:  # interpreter shutdown: report, never raise from atexit
            log.error("could not mark sweep parent %s FAILED: %s", self.run_id, err)
        self._closed = True


def job_outcome(job_return: Any) -> tuple[str, str | None]:
    """(COMPLETED | FAILED | UNKNOWN, error text) of a Hydra ``JobReturn`` (see the module docstring)."""
    status = getattr(getattr(job_return, "status", None), "name", "UNKNOWN")
    value = getattr(job_return, "_return_value", None)
    if status == "FAILED":
        return status, f"{type(value).__name__}: {value}"[:2000]
    error = getattr(value, "error", None)
    if isinstance(error, str):  # hipo.cli.JobFailure (not imported: the callback must not import the command)
        return "FAILED", error[:2000]
    if isinstance(value, float) and math.isnan(value):
        return "FAILED", "the job returned a NaN objective (it failed or diverged)"
    return status, None


def sweep_summary(tracking_uri: str, parent_id: str, sweep_dir: Path | None) -> dict[str, Any]:
    """Children statuses (MLflow) and job statuses (``hipo_job_status.json`` under ``sweep_dir``) of one sweep.

    Returns:
        ``{"parent_run_id", "children": [{run_id, name, status, overrides}], "jobs": [...], "counts": {...},
        "ok": bool}``; ``ok`` is False when a job FAILED or a child run is not FINISHED, or no child exists.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    parent = client.get_run(parent_id)
    runs = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'", max_results=10000
    )
    children = [
        {
            "run_id": r.info.run_id,
            "name": r.info.run_name,
            "status": r.info.status,
            "overrides": r.data.tags.get("hipo.overrides", ""),
        }
        for r in sorted(runs, key=lambda r: r.info.start_time or 0)
    ]
    jobs: list[dict[str, Any]] = []
    if sweep_dir is not None and Path(sweep_dir).is_dir():
        for path in sorted(Path(sweep_dir).rglob(JOB_STATUS_FILE)):
            try:
                jobs.append({**json.loads(path.read_text()), "path": str(path)})
            except json.JSONDecodeError as err:
                jobs.append({"status": "UNKNOWN", "error": f"{path}:{err.lineno}: {err.msg}", "path": str(path)})
    counts = {
        "children": len(children),
        "children_finished": sum(c["status"] == "FINISHED" for c in children),
        "children_failed": sum(c["status"] in ("FAILED", "KILLED") for c in children),
        "children_running": sum(c["status"] in ("RUNNING", "SCHEDULED") for c in children),
        "jobs": len(jobs),
        "jobs_failed": sum(j.get("status") == "FAILED" for j in jobs),
    }
    ok = counts["children"] > 0 and counts["children_finished"] == counts["children"] and counts["jobs_failed"] == 0
    return {"parent_run_id": parent_id, "children": children, "jobs": jobs, "counts": counts, "ok": ok}


def format_summary(summary: dict[str, Any]) -> str:
    """A Markdown summary of :func:`sweep_summary`'s result: one line of counts, then a table of children."""
    c = summary["counts"]
    lines = [
        f"sweep {'OK' if summary['ok'] else 'FAILED'}: {c['children_finished']}/{c['children']} child runs finished, "
        f"{c['children_failed']} failed, {c['children_running']} unfinished; {c['jobs_failed']}/{c['jobs']} "
        "Hydra jobs failed",
        "",
        "| run | status | overrides |",
        "|---|---|---|",
    ]
    lines += [f"| {ch['name']} | {ch['status']} | `{ch['overrides']}` |" for ch in summary["children"]]
    failed_jobs = [j for j in summary["jobs"] if j.get("status") == "FAILED"]
    if failed_jobs:
        lines += ["", "Failed Hydra jobs:"]
        lines += [f"- `{' '.join(j.get('overrides', []))}`: {j.get('error')}" for j in failed_jobs]
    return "\n".join(lines)
