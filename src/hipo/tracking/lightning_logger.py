"""A Lightning MLflow logger that writes into a run owned by HiPO's run lifecycle."""

from __future__ import annotations

from collections.abc import Mapping

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only
from mlflow.tracking import MlflowClient


class AttachedMLFlowLogger(MLFlowLogger):
    """Logs metrics into an existing run and leaves closing it (and its final status) to ``tracked_run``.

    Lightning's own logger marks the run FINISHED at the end of ``fit``; HiPO keeps the run open for the
    after-training validation and evaluation that follow, and marks it FAILED if any of them crashes.

    A resumed job continues the run of the job it resumes: steps the interrupted job already recorded (it may have
    run past its last checkpoint before it died) are not recorded again, so the history has no duplicates; a resumed
    run recomputes exactly those steps, so nothing is lost either.

    Args:
        recorded_steps: per metric key, the last step already in the run (from :func:`recorded_steps`).
        **kwargs: ``MLFlowLogger``'s (``experiment_name``, ``tracking_uri``, ``run_id``).
    """

    def __init__(self, recorded_steps: Mapping[str, int] | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.recorded_steps = dict(recorded_steps or {})

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self.recorded_steps and step is not None:
            metrics = {k: v for k, v in metrics.items() if step > self.recorded_steps.get(k, -1)}
        if metrics:
            super().log_metrics(metrics, step)

    def finalize(self, status: str = "success") -> None:
        """Does not terminate the run (see class docstring)."""


def recorded_steps(tracking_uri: str, run_id: str) -> dict[str, int]:
    """The last step recorded for every metric of a run."""
    client = MlflowClient(tracking_uri)
    keys = client.get_run(run_id).data.metrics.keys()
    return {key: max((m.step for m in client.get_metric_history(run_id, key)), default=-1) for key in keys}
