"""``<output_dir>/hipo_run.json``: which MLflow run a job's output folder belongs to, so a resumed job continues it."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from hipo.training.checkpoints import write_atomically

log = logging.getLogger(__name__)

RUN_RECORD = "hipo_run.json"


@dataclass(frozen=True)
class RunRecord:
    """The run of an output folder: its id and the store that holds it."""

    run_id: str
    tracking_uri: str
    experiment_name: str


def write_run_record(output_dir: Path, record: RunRecord) -> None:
    """Writes the record (atomically) when the job's run is created."""
    write_atomically(output_dir / RUN_RECORD, lambda handle: handle.write(json.dumps(asdict(record)).encode()))


def run_to_continue(output_dir: Path, tracking_uri: str) -> str | None:
    """The run id recorded in ``output_dir`` if that run exists in the store at ``tracking_uri``, else None.

    A record of another store (the job is resumed against a different tracking URI) or of a deleted run starts a new
    run, with a warning.
    """
    path = output_dir / RUN_RECORD
    if not path.is_file():
        return None
    try:
        record = RunRecord(**json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as error:
        log.warning("%s is not a run record (%s); the resumed job starts a new MLflow run", path, error)
        return None
    if record.tracking_uri != tracking_uri:
        log.warning("%s names a run of %s, not of %s; starting a new run", path, record.tracking_uri, tracking_uri)
        return None
    from hipo.tracking.store import prepare_store

    prepare_store(tracking_uri)
    try:
        MlflowClient(tracking_uri).get_run(record.run_id)
    except MlflowException:
        log.warning("run %s of %s no longer exists; starting a new run", record.run_id, path)
        return None
    return record.run_id
