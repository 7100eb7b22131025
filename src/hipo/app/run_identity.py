"""What a training job is called in MLflow: run name, tags and sweep parent, known before any work is done.

Computed first so that a job of a sweep that fails in its setup (bad data, bad config) is still recorded as a
FAILED child run under the right name.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from hipo.app.builders import method_label
from hipo.config.secrets import redact_overrides
from hipo.tracking.run import git_commit


@dataclass(frozen=True)
class RunIdentity:
    """Run name, tags and sweep parent of one training job."""

    name: str
    tags: dict[str, str]
    parent_run_id: str | None
    overrides: list[str]


def hydra_context() -> tuple[dict[str, str], list[str], bool]:
    """(group choices, job overrides, is-multirun) of the running Hydra job; empty outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}, [], False
    hydra_cfg = HydraConfig.get()
    choices = {str(k): str(v) for k, v in hydra_cfg.runtime.choices.items() if v is not None}
    overrides = list(hydra_cfg.overrides.task)
    return choices, overrides, str(hydra_cfg.mode) == "RunMode.MULTIRUN"


def run_name_for(method: str, cfg: DictConfig, overrides: list[str], multirun: bool) -> str:
    """The MLflow run name: the configured one, or what differs in a sweep, or ``<method>-seed<seed>``."""
    if cfg.logger.run_name:
        return str(cfg.logger.run_name)
    if multirun and overrides:
        from hipo.tracking.sweep import child_run_name

        return child_run_name(overrides, base=method)
    return f"{method}-seed{cfg.seed}"


def run_identity(cfg: DictConfig) -> RunIdentity:
    """The job's run name, tags (loss, method, model, data, seed, commit, overrides, experiment, sweep) and parent."""
    from hipo.tracking.sweep import parent_run_id, sweep_id_of

    choices, overrides, multirun = hydra_context()
    method = method_label(cfg, choices)
    tags = {
        "hipo.loss": str(cfg.loss.get("name", "")),
        "hipo.method": method,
        "hipo.model": str(cfg.model.name_or_path),
        "hipo.data": str(cfg.data.name),
        "hipo.seed": str(cfg.seed),
        "hipo.git_commit": git_commit(),
        "hipo.overrides": " ".join(redact_overrides(overrides)),
        **({"hipo.experiment": str(cfg.experiment)} if cfg.get("experiment") else {}),
        **{str(k): str(v) for k, v in cfg.logger.tags.items()},
    }
    # a single run never attaches to a (stale) sweep parent; an explicit one (hipo iterate's) always wins
    parent = cfg.logger.get("parent_run_id") or (parent_run_id() if multirun else None)
    if parent:
        tags["hipo.sweep_id"] = sweep_id_of(parent, cfg.logger.tracking_uri) or parent
    return RunIdentity(run_name_for(method, cfg, overrides, multirun), tags, parent, overrides)
