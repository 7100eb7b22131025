"""The ``hipo`` command: ``hipo train|eval|segment|report|bench [hydra overrides...]``."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

COMMANDS: dict[str, tuple[str, str, str]] = {
    # name: (module, function, root config)
    "train": ("hipo.app.train", "train", "config"),
    "segment": ("hipo.app.segment", "segment", "config"),
    "eval": ("hipo.app.evaluate", "evaluate_command", "eval"),
    "report": ("hipo.app.report", "report_command", "report"),
    "bench": ("hipo.app.bench", "bench_command", "bench"),
}

USAGE = """usage: hipo {train,eval,segment,report,bench} [key=value ...] [-m] [--cfg job] [--help]

  train    train a policy (DPO / HiPO / KTO ...) on segmented preference pairs, tracked in MLflow
  eval     evaluate a model / adapter / checkpoint on math benchmarks (+ optional rubric judge)
  segment  print how N examples of a dataset are segmented into Rq / Mt / Ra, for a person to check
  report   tables and plots of a sweep or experiment from MLflow
  bench    step-time / throughput / memory benchmark of training variants

Overrides are Hydra's: e.g. `hipo train loss=dpo model=tiny trainer.max_steps=10`,
sweeps with -m: `hipo train -m loss=dpo,hipo seed=0,1,2`. `hipo train --help` lists the config groups.
"""


def config_dir() -> str:
    """The ``conf/`` folder: ``$HIPO_CONFIG_DIR`` or the one at the project root."""
    configured = os.environ.get("HIPO_CONFIG_DIR")
    if configured:
        return str(Path(configured).resolve())
    return str(Path(__file__).resolve().parents[2] / "conf")


def _hydra_entry(module_name: str, function_name: str, config_name: str) -> Callable[[], None]:
    import importlib

    import hydra
    from omegaconf import DictConfig

    from hipo.config import register_configs

    register_configs()
    target = getattr(importlib.import_module(module_name), function_name)

    @hydra.main(version_base="1.3", config_path=config_dir(), config_name=config_name)
    def entry(cfg: DictConfig) -> object:
        from hydra.core.hydra_config import HydraConfig

        if str(HydraConfig.get().mode) != "RunMode.MULTIRUN":
            return target(cfg)
        if cfg.get("objective"):  # an optimizing sweeper (Optuna) needs the value, and a failed trial must raise
            return target(cfg)["objective"]
        try:  # one failed job of a sweep is marked failed (in MLflow too) and the sweep goes on
            return target(cfg)
        except Exception as error:
            logging.getLogger("hipo").exception("job %s failed", HydraConfig.get().job.num)
            return {"failed": f"{type(error).__name__}: {error}"}

    return entry


def main(argv: list[str] | None = None) -> None:
    """Dispatches ``hipo <command> ...`` to that command's Hydra app (the rest of argv goes to Hydra)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"hipo: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        raise SystemExit(2)
    module_name, function_name, config_name = COMMANDS[command]
    if command == "report":  # `experiment` names a config group of `hipo train`; for reports it is a plain value
        rest = [f"experiment_config={a.split('=', 1)[1]}" if a.startswith("experiment=") else a for a in rest]
    sys.argv = [f"hipo {command}", *rest]
    _hydra_entry(module_name, function_name, config_name)()


if __name__ == "__main__":
    main()
