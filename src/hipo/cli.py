"""The ``hipo`` command: ``hipo train|eval|segment|report|perf|pipeline|pairs|iterate [overrides...] [--verbose]``.

How a command ends (see :mod:`hipo.errors`): 0 when it finished; 2 for a user error (bad data or config: one line
``error: ...``, plus ``hint: ...`` when there is advice; the traceback only with ``--verbose`` or
``HYDRA_FULL_ERROR=1``); ``128 + signal`` when a signal stopped it (preemption, Ctrl+C); 1 for anything else
(with its traceback), and for a sweep in which any job failed -- the sweep runs every job, then lists the failures.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hipo.config.secrets import secret_overrides, secret_refusal
from hipo.errors import USER_ERROR_EXIT_CODE, JobInterrupted, UserError, exit_code_of, one_line

COMMANDS: dict[str, tuple[str, str, str]] = {
    # name: (module, function, root config)
    "train": ("hipo.app.train", "train", "config"),
    "segment": ("hipo.app.segment", "segment", "config"),
    "eval": ("hipo.app.eval_command", "evaluate_command", "eval"),
    "report": ("hipo.app.report_command", "report_command", "report"),
    "perf": ("hipo.app.perf_command", "perf_command", "perf"),
    "pipeline": ("hipo.app.pipeline", "pipeline_command", "config"),
    "pairs": ("hipo.app.pairs_command", "pairs_command", "pairs"),
    "iterate": ("hipo.app.iterate_command", "iterate_command", "config"),
}

USAGE = """usage: hipo {train,eval,segment,report,perf,pipeline,pairs,iterate} [key=value ...] [-m] [--cfg job]
                 [--verbose] [--help]

  train    train a policy (DPO / HiPO / KTO ...) on segmented preference pairs, tracked in MLflow
  eval     evaluate a model / adapter / checkpoint on math benchmarks (+ optional rubric judge)
  segment  print how N examples of a dataset are segmented into Rq / Mt / Ra, for a person to check
  report   tables and plots of a sweep or experiment from MLflow
  perf     step time / throughput / memory of training variants, side by side
  pipeline an experiment end to end: LLM decomposition -> training sweep (+ benchmarks, judge) -> report
  pairs    on-policy preference pairs: sample K answers per training problem, grade them, pair right x wrong
  iterate  iterative rounds of an experiment: pairs from policy r -> train policy r+1 (iterative DPO / HiPO)

Overrides are Hydra's: e.g. `hipo train loss=dpo model=tiny trainer.max_steps=10`,
sweeps with -m: `hipo train -m loss=dpo,hipo seed=0,1,2`. `hipo train --help` lists the config groups.
--verbose prints the traceback of user errors too (as does HYDRA_FULL_ERROR=1).
`hipo bench` is the deprecated old name of `hipo perf` (its bench.* / bench/* overrides are read as perf.* / perf/*).
"""

# Old command names that still run, for one release: old name -> (new name, the line printed to stderr).
DEPRECATED_COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("perf", "hipo bench is deprecated: use hipo perf (same options; bench.* keys are now perf.*)"),
}
_BENCH_KEY = re.compile(r"^(\+\+|\+|~)?bench(?=[./=]|$)")

VERBOSE_ENV = "HIPO_VERBOSE"
_HYDRA_FILES = (".hydra",)


def config_dir() -> str:
    """The ``conf/`` folder: ``$HIPO_CONFIG_DIR`` or the one at the project root."""
    configured = os.environ.get("HIPO_CONFIG_DIR")
    if configured:
        return str(Path(configured).resolve())
    return str(Path(__file__).resolve().parents[2] / "conf")


def verbose() -> bool:
    """Whether errors print their traceback (``--verbose`` or ``HYDRA_FULL_ERROR=1``)."""
    return os.environ.get(VERBOSE_ENV) == "1" or os.environ.get("HYDRA_FULL_ERROR") == "1"


@dataclass
class JobFailure:
    """What a failed job of a sweep returns to Hydra: the sweep goes on and reports it at the end.

    Attributes:
        error: ``<ExceptionType>: <message>`` on one line.
        exit_code: what the job alone would have exited with.
    """

    error: str
    exit_code: int


@dataclass
class _Invocation:
    """What one ``hipo`` call did: whether Hydra got as far as running the command (else composition failed)."""

    argv: list[str]
    task_started: bool = False


def report_error(error: BaseException) -> None:
    """Prints how a job ended to stderr: one line for a user error or a stop, the traceback otherwise."""
    if isinstance(error, UserError):
        if verbose():
            traceback.print_exception(error)
        print(f"error: {one_line(error)}", file=sys.stderr)
        if error.hint:
            print(f"hint: {error.hint}", file=sys.stderr)
    elif isinstance(error, (JobInterrupted, KeyboardInterrupt)):
        print(f"hipo: {one_line(error) if str(error) else 'interrupted'}", file=sys.stderr)
    else:
        traceback.print_exception(error)


def _remove_hydra_only_output(output_dir: str | None) -> None:
    """Removes a single run's output folder when it holds nothing but Hydra's own files (nothing half-written)."""
    if not output_dir:
        return
    folder = Path(output_dir)
    if not folder.is_dir() or any(p.name not in _HYDRA_FILES and p.suffix != ".log" for p in folder.iterdir()):
        return
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    for parent in folder.parents:  # the empty date folders Hydra made above it, up to the working directory
        if parent == Path.cwd() or not parent.is_dir() or any(parent.iterdir()):
            break
        parent.rmdir()


def _job_error(error: BaseException, cfg: Any, multirun: bool) -> Any:
    """What the command does with a job's error: a sweep records it and goes on, a single run exits."""
    from hydra.core.hydra_config import HydraConfig

    if isinstance(error, SystemExit):  # e.g. submitit requeueing a preempted job: its exit code stands
        raise error
    code = exit_code_of(error)
    if multirun and isinstance(error, Exception) and not isinstance(error, JobInterrupted):
        if isinstance(error, UserError) and not verbose():
            logging.getLogger("hipo").error("job %s failed: %s", HydraConfig.get().job.num, one_line(error))
        else:
            logging.getLogger("hipo").error("job %s failed", HydraConfig.get().job.num, exc_info=error)
        failure = JobFailure(f"{type(error).__name__}: {one_line(error)}", code)
        return float("nan") if cfg.get("objective") else failure  # an optimizing sweeper records a failed trial
    report_error(error)
    if isinstance(error, UserError) and not multirun:
        _remove_hydra_only_output(str(HydraConfig.get().runtime.output_dir))
    raise SystemExit(code)


def _hydra_entry(module_name: str, function_name: str, config_name: str, call: _Invocation) -> Callable[[], None]:
    import importlib

    import hydra
    from omegaconf import DictConfig

    from hipo.config import register_configs
    from hipo.config.components import check_components

    register_configs()
    target = getattr(importlib.import_module(module_name), function_name)

    @hydra.main(version_base="1.3", config_path=config_dir(), config_name=config_name)
    def entry(cfg: DictConfig) -> object:
        from hydra.core.hydra_config import HydraConfig

        call.task_started = True
        sys.argv = list(call.argv)  # what re-executes this command (e.g. a requeued job) sees the real command line
        multirun = str(HydraConfig.get().mode) == "RunMode.MULTIRUN"
        try:
            check_components(cfg)  # every `_target_` node against its constructor, before anything loads
            result = target(cfg)
        except BaseException as error:  # noqa: BLE001 - every outcome is reported and becomes an exit code
            return _job_error(error, cfg, multirun)
        if multirun and cfg.get("objective"):  # an optimizing sweeper (Optuna) needs the value
            return result["objective"]
        return result

    return entry


def _finish_sweep() -> None:
    """After a sweep: lists the failed jobs and exits 1 when any job or child run failed."""
    from hipo.tracking.sweep import last_sweep_summary

    summary = last_sweep_summary()
    if summary is None or summary["ok"]:
        return
    counts = summary["counts"]
    print(
        f"hipo: sweep incomplete: {counts['jobs_failed']} of {counts['jobs']} jobs failed, "
        f"{counts['children_finished']} of {counts['children']} runs finished",
        file=sys.stderr,
    )
    varying = set(summary.get("varying") or [])
    for job in summary["jobs"]:
        if job.get("status") == "FAILED":
            overrides = [o for o in job.get("overrides", []) if not varying or o.split("=", 1)[0] in varying]
            print(f"  failed: {' '.join(overrides)}: {job.get('error')}", file=sys.stderr)
    raise SystemExit(1)


def bench_overrides_as_perf(args: list[str]) -> list[str]:
    """``hipo bench``'s overrides in ``hipo perf``'s names: a key ``bench.x`` / group ``bench/x`` (also with a
    ``+``, ``++`` or ``~`` prefix) becomes ``perf.x`` / ``perf/x``; values, flags and other keys are unchanged."""
    return [arg if arg.startswith("-") else _BENCH_KEY.sub(r"\1perf", arg, count=1) for arg in args]


def main(argv: list[str] | None = None) -> None:
    """Dispatches ``hipo <command> ...`` to that command's Hydra app (the rest of argv goes to Hydra)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--verbose" in args:
        args.remove("--verbose")
        os.environ[VERBOSE_ENV] = "1"
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command, rest = args[0], args[1:]
    if command in DEPRECATED_COMMANDS:
        command, notice = DEPRECATED_COMMANDS[command]
        print(notice, file=sys.stderr)
        rest = bench_overrides_as_perf(rest)
    if command not in COMMANDS:
        print(f"hipo: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        raise SystemExit(USER_ERROR_EXIT_CODE)
    secrets = secret_overrides(rest)
    if secrets:  # refused before Hydra could write them into .hydra/overrides.yaml (or echo them in an error)
        message, hint = secret_refusal(secrets)
        print(f"error: {message}\nhint: {hint}", file=sys.stderr)
        raise SystemExit(USER_ERROR_EXIT_CODE)
    module_name, function_name, config_name = COMMANDS[command]
    if command in ("train", "perf", "iterate"):
        # before any torch op starts the intra-op thread pool: its threads inherit the setting when created
        from hipo.training.denormals import flush_denormals

        flush_denormals()
    if command == "report":  # `experiment` names a config group of `hipo train`; for reports it is a plain value
        rest = [f"experiment_config={a.split('=', 1)[1]}" if a.startswith("experiment=") else a for a in rest]
    call = _Invocation(argv=[sys.argv[0], command, *rest])
    sys.argv = [sys.argv[0], *rest]  # Hydra parses sys.argv[1:]
    try:
        _hydra_entry(module_name, function_name, config_name, call)()
    except SystemExit as exit_:
        if exit_.code == 1 and not call.task_started:  # Hydra printed a composition error: the config is wrong
            raise SystemExit(USER_ERROR_EXIT_CODE) from None
        raise
    finally:
        sys.argv = list(call.argv)
    _finish_sweep()


if __name__ == "__main__":
    main()
