"""Reports of sweeps and experiments from MLflow: Markdown/CSV tables with statistics and PNG plots.

Entry point: :func:`build_report` (``hipo report`` calls it). Statistics are defined in :mod:`hipo.report.stats`.
"""

from hipo.report.build import ReportResult, build_report

__all__ = ["ReportResult", "build_report"]
