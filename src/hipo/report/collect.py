"""MLflow -> plain Python: the runs of a sweep or experiment, their final metrics, histories and per-sample records."""

from __future__ import annotations

import csv
import json
import math
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from hipo.tracking.sweep import SWEEP_ROLE, SWEEP_ROLE_TAG
from hipo.training.held_out import HELD_OUT_PAIRS

METHOD_FALLBACK_TAG = "hipo.loss"


@dataclass
class RunRecord:
    """One training job as the report sees it.

    Attributes:
        run_id, name, status: MLflow's (status is FINISHED, FAILED, KILLED, RUNNING or SCHEDULED).
        method: the group label (tag ``group_by``, else ``hipo.loss``, else the run name).
        seed: tag ``hipo.seed`` (None when absent).
        metrics: latest value of every metric key.
        tags: all tags.
    """

    run_id: str
    name: str
    status: str
    method: str
    seed: str | None
    metrics: dict[str, float]
    tags: dict[str, str]


@dataclass
class CollectedRuns:
    """What :func:`collect_runs` found.

    Attributes:
        runs: FINISHED runs (the ones the statistics use), in start order.
        excluded: runs not FINISHED (failed, killed, still running): listed in the report, left out of statistics.
        parent_run_id: the sweep's parent run, when one was given or found (all runs share it).
        experiment_ids: experiments searched.
        description: how the runs were selected, for the report header.
    """

    runs: list[RunRecord]
    excluded: list[RunRecord]
    parent_run_id: str | None
    experiment_ids: list[str]
    description: str
    methods: list[str] = field(default_factory=list)


def _search_all(client: MlflowClient, experiment_ids: list[str], filter_string: str) -> list[Run]:
    """Every run matching ``filter_string`` (all pages), oldest first."""
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(experiment_ids, filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            break
    return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))


def _record(run: Run, group_by: str) -> RunRecord:
    tags = dict(run.data.tags)
    method = tags.get(group_by) or tags.get(METHOD_FALLBACK_TAG) or run.info.run_name or run.info.run_id
    return RunRecord(
        run_id=run.info.run_id,
        name=run.info.run_name or run.info.run_id,
        status=run.info.status,
        method=method,
        seed=tags.get("hipo.seed"),
        metrics=dict(run.data.metrics),
        tags=tags,
    )


def _is_sweep_parent(run: Run) -> bool:
    return run.data.tags.get(SWEEP_ROLE_TAG) == SWEEP_ROLE


def _experiment_ids(client: MlflowClient, tracking_uri: str, experiment_name: str | None) -> list[str]:
    """The id of MLflow experiment ``experiment_name``, or of every experiment when it is None.

    Raises:
        ValueError: no experiment of that name in the store.
    """
    if experiment_name is None:
        return [e.experiment_id for e in client.search_experiments()]
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        raise ValueError(f"MLflow experiment {experiment_name!r} not found in {tracking_uri}")
    return [experiment.experiment_id]


def _select_runs(
    client: MlflowClient,
    experiment_ids: list[str],
    experiment_name: str | None,
    sweep_id: str | None,
    parent_run_id: str | None,
    hipo_experiment: str | None,
) -> tuple[list[Run], str | None, list[str], str]:
    """(runs, sweep parent run id or None, experiment ids searched, description) by the first selector given.

    The precedence is :func:`collect_runs`'s; ``parent_run_id`` searches its own experiment only.

    Raises:
        ValueError: no selector given.
    """
    if parent_run_id:
        parent = client.get_run(parent_run_id)
        experiment_ids = [parent.info.experiment_id]
        found = _search_all(client, experiment_ids, f"tags.`mlflow.parentRunId` = '{parent_run_id}'")
        description = f"children of parent run {parent_run_id}"
    elif sweep_id:
        found = [r for r in _search_all(client, experiment_ids, f"tags.`hipo.sweep_id` = '{sweep_id}'")]
        parents = [r for r in found if _is_sweep_parent(r)]
        found = [r for r in found if not _is_sweep_parent(r)]
        parent_run_id = parents[0].info.run_id if parents else None
        description = f"sweep {sweep_id}"
    elif hipo_experiment:
        found = _search_all(client, experiment_ids, f"tags.`hipo.experiment` = '{hipo_experiment}'")
        parents = [r for r in found if _is_sweep_parent(r)]
        description = f"experiment config {hipo_experiment}"
        if parents:
            latest = parents[-1]  # _search_all sorts by start time
            parent_run_id = latest.info.run_id
            found = _search_all(client, [latest.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_run_id}'")
            description += f", latest of {len(parents)} sweep(s): {latest.data.tags.get('hipo.sweep_id')}"
    elif experiment_name is not None:
        found = [r for r in _search_all(client, experiment_ids, "") if not _is_sweep_parent(r)]
        description = f"experiment {experiment_name}"
    else:
        raise ValueError("build_report needs experiment_name, hipo_experiment, sweep_id or parent_run_id")
    return found, parent_run_id, experiment_ids, description


def _common_parent(runs: list[Run]) -> str | None:
    """The ``mlflow.parentRunId`` every run shares, or None (no parent, or several)."""
    parents_of = {r.data.tags.get("mlflow.parentRunId") for r in runs}
    if len(parents_of) == 1 and None not in parents_of:
        return parents_of.pop()
    return None


def collect_runs(
    tracking_uri: str,
    experiment_name: str | None = None,
    sweep_id: str | None = None,
    parent_run_id: str | None = None,
    group_by: str = "hipo.method",
    hipo_experiment: str | None = None,
) -> CollectedRuns:
    """The runs of one sweep (by parent run id or ``hipo.sweep_id``), of one experiment config, or of one experiment.

    Precedence: ``parent_run_id`` (its children), then ``sweep_id`` (runs tagged with it, parent excluded), then
    ``hipo_experiment`` (the experiment config name, tag ``hipo.experiment``: the children of its most recent sweep
    parent, or, without a sweep, every run with the tag), then ``experiment_name`` alone (all runs of that MLflow
    experiment but sweep parents). ``experiment_name`` also restricts the search of the other selectors (default:
    all experiments). When every selected run has the same ``mlflow.parentRunId``, that parent is reported as the
    sweep's parent.

    Raises:
        ValueError: no selector given, an unknown experiment, or nothing matched (the message names the selector).
    """
    for label, value in (("sweep_id", sweep_id), ("parent_run_id", parent_run_id), ("experiment", hipo_experiment)):
        if value is not None and "'" in value:
            raise ValueError(f"{label}={value!r}: a quote cannot be used in an MLflow filter")
    from hipo.tracking.store import prepare_store

    prepare_store(tracking_uri)
    client = MlflowClient(tracking_uri)
    experiment_ids = _experiment_ids(client, tracking_uri, experiment_name)
    found, parent_run_id, experiment_ids, description = _select_runs(
        client, experiment_ids, experiment_name, sweep_id, parent_run_id, hipo_experiment
    )
    if not found:
        raise ValueError(f"no runs found for {description} in {tracking_uri}")
    if parent_run_id is None:
        parent_run_id = _common_parent(found)
    records = [_record(r, group_by) for r in found]
    runs = [r for r in records if r.status == "FINISHED"]
    excluded = [r for r in records if r.status != "FINISHED"]
    methods = list(dict.fromkeys(r.method for r in runs))
    return CollectedRuns(runs, excluded, parent_run_id, experiment_ids, description, methods)


def metric_history(tracking_uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    """``[(step, value)]`` of one metric, sorted by step; the last value logged at a step wins."""
    by_step: dict[int, tuple[int, float]] = {}
    for m in MlflowClient(tracking_uri).get_metric_history(run_id, key):
        previous = by_step.get(m.step)
        if previous is None or m.timestamp >= previous[0]:
            by_step[m.step] = (m.timestamp, m.value)
    return [(step, by_step[step][1]) for step in sorted(by_step)]


def benchmarks_of(runs: Iterable[RunRecord]) -> list[str]:
    """Benchmark names with an ``eval/<bench>/accuracy`` metric in any run, sorted."""
    names = {
        key[len("eval/") : -len("/accuracy")]
        for r in runs
        for key in r.metrics
        if key.startswith("eval/") and key.endswith("/accuracy") and "/judge/" not in key
    }
    return sorted(n for n in names if n)


def _problem_correctness(record: dict[str, Any], where: str) -> float:
    """Mean correctness of one record: over ``samples`` when several were drawn, else its ``correct`` field."""
    samples = record.get("samples")
    if isinstance(samples, list) and samples:
        return sum(bool(s.get("correct")) for s in samples) / len(samples)
    if "correct" not in record:
        raise ValueError(f"{where}: field 'correct' is missing")
    return float(bool(record["correct"]))


def load_samples(tracking_uri: str, run_id: str, benchmark: str) -> dict[str, float] | None:
    """``{problem id: correctness in [0, 1]}`` from the run's ``eval/<benchmark>/samples.json``; None if absent.

    Raises:
        ValueError: the artifact is not a list of records with ``id`` and ``correct`` (names run, file, record).
    """
    client = MlflowClient(tracking_uri)
    artifact = f"eval/{benchmark}/samples.json"
    if not any(f.path == artifact for f in client.list_artifacts(run_id, f"eval/{benchmark}")):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(client.download_artifacts(run_id, artifact, tmp))
        where = f"run {run_id} artifact {artifact}"
        try:
            records = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}:{err.lineno}: not valid JSON ({err.msg})") from err
    if not isinstance(records, list):
        raise ValueError(f"{where}: expected a list of records, got {type(records).__name__}")
    out: dict[str, float] = {}
    for index, record in enumerate(records):
        here = f"{where} record {index}"
        if not isinstance(record, dict) or "id" not in record:
            raise ValueError(f"{here}: field 'id' is missing")
        out[str(record["id"])] = _problem_correctness(record, here)
    return out


def load_held_out_pairs(tracking_uri: str, run_id: str) -> dict[str, dict[str, float]] | None:
    """``{term: {pair id: margin}}`` from the run's ``held_out/pairs.csv`` (nan: term absent); None if absent.

    Raises:
        ValueError: the file lacks the ``pair`` column or holds a value that is not a number (names run and line).
    """
    client = MlflowClient(tracking_uri)
    if not any(f.path == HELD_OUT_PAIRS for f in client.list_artifacts(run_id, "held_out")):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(client.download_artifacts(run_id, HELD_OUT_PAIRS, tmp))
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
    where = f"run {run_id} artifact {HELD_OUT_PAIRS}"
    if not rows or rows[0][:1] != ["pair"]:
        raise ValueError(f"{where}:1: expected a header starting with 'pair'")
    terms = [name.removeprefix("margin/") for name in rows[0][1:]]
    out: dict[str, dict[str, float]] = {term: {} for term in terms}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(terms) + 1:
            raise ValueError(f"{where}:{line}: expected {len(terms) + 1} fields, got {len(row)}")
        for term, value in zip(terms, row[1:], strict=True):
            try:
                out[term][row[0]] = float(value) if value else math.nan
            except ValueError:
                raise ValueError(f"{where}:{line}: margin/{term}={value!r} is not a number") from None
    return out


def pair_accuracy(margin: float) -> float:
    """A held-out pair's accuracy on one term: 1 for a positive margin, 1/2 for a tie, 0 below (nan stays nan)."""
    if math.isnan(margin):
        return math.nan
    return 1.0 if margin > 0 else 0.5 if margin == 0 else 0.0
