"""A Lightning MLflow logger that writes into a run owned by HiPO's run lifecycle."""

from __future__ import annotations

from lightning.pytorch.loggers import MLFlowLogger


class AttachedMLFlowLogger(MLFlowLogger):
    """Logs metrics into an existing run and leaves closing it (and its final status) to ``tracked_run``.

    Lightning's own logger marks the run FINISHED at the end of ``fit``; HiPO keeps the run open for the
    after-training validation and evaluation that follow, and marks it FAILED if any of them crashes.
    """

    def finalize(self, status: str = "success") -> None:
        """Does not terminate the run (see class docstring)."""
