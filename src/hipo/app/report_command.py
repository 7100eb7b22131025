"""`hipo report`: one sweep or experiment from MLflow -> Markdown/CSV tables and PNG plots (also parent artifacts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from hipo.report.build import build_report


def report_dir(cfg: DictConfig) -> Path:
    """``out_dir``, else ``experiments/<experiment>/report``, else ``reports/<selector value>``."""
    if cfg.out_dir:
        return Path(cfg.out_dir)
    if cfg.experiment_config:
        return Path("experiments") / str(cfg.experiment_config) / "report"
    selector = cfg.sweep_id or cfg.parent_run_id or cfg.mlflow_experiment
    if not selector:
        raise ValueError("hipo report: name the runs with experiment=, sweep_id=, parent_run_id= or mlflow_experiment=")
    return Path("reports") / str(selector)


def report_command(cfg: DictConfig) -> dict[str, Any]:
    """Writes the report and prints where (and the Markdown table)."""
    out_dir = report_dir(cfg)
    result = build_report(
        cfg.logger.tracking_uri,
        experiment_name=cfg.mlflow_experiment,
        sweep_id=cfg.sweep_id,
        parent_run_id=cfg.parent_run_id,
        out_dir=out_dir,
        baseline=cfg.baseline,
        group_by=cfg.group_by,
        n_resamples=cfg.n_resamples,
        seed=cfg.seed,
        log_to_parent=cfg.log_to_parent,
        hipo_experiment=cfg.experiment_config,
    )
    markdown = out_dir / "report.md"
    if markdown.exists():
        print(markdown.read_text())
    print(f"report written to {out_dir}/")
    return {"out_dir": str(out_dir), "result": result}
