"""`hipo iterate experiment=NAME`: rounds of on-policy preference training (iterative DPO / RPO / HiPO).

Round ``r`` (``iterate.rounds`` of them, set in the experiment) runs two commands a user could also run alone:

1. ``hipo pairs`` samples pairs from policy ``r`` (round 0: ``iterate.start``, e.g. an SFT run's ``final/``, or
   the base model) into ``<output_dir>/round<r>/pairs.jsonl`` (sampling seed ``seed + r``, so rounds draw anew);
2. ``hipo train experiment=NAME data=jsonl data.path=<those pairs>`` trains policy ``r + 1`` from policy ``r``'s
   adapter (``model.adapter_path``) into ``<output_dir>/round<r>/train``. Its reference is policy ``r``
   (``iterate.reference=previous``, as iterative DPO does) or the start policy (``iterate.reference=start``:
   ``model.reference_adapter_path``).

Every step is a child MLflow run of the iterate run (``logger.parent_run_id``), all in the experiment's MLflow
experiment. A step is done when its output is: the pairs file (written whole at the end of ``hipo pairs``) and the
training's ``final/`` folder (written whole). Rerun with the same ``output_dir``, the command continues its MLflow
run, skips the steps that are done and reruns the one it stopped in, which resumes by itself (``hipo pairs`` from its
samples file, ``hipo train`` from its last checkpoint with ``resume=auto``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from hipo.app.child_steps import run_step
from hipo.app.train import resolved_config
from hipo.errors import ConfigError
from hipo.tracking.run import git_commit, tracked_run
from hipo.tracking.run_record import RunRecord, run_to_continue, write_run_record
from hipo.training.preemption import StopRequests

REFERENCES = ("previous", "start")
_NOT_FORWARDED = ("iterate.", "output_dir=", "hydra.", "resume=", "experiment=")


def _task_overrides() -> list[str]:
    """The overrides this command was called with."""
    from hydra.core.hydra_config import HydraConfig

    return [str(o) for o in HydraConfig.get().overrides.task]


def check_iterate(cfg: DictConfig) -> Path | None:
    """The start policy's folder (None: the base model), after checking ``iterate.*`` (exit 2, naming the key)."""
    if not cfg.get("experiment"):
        raise ConfigError("hipo iterate needs experiment=NAME: the experiment's iterate.* says what each round runs")
    settings = cfg.iterate
    if int(settings.rounds) < 1:
        raise ConfigError(f"iterate.rounds={settings.rounds}: must be >= 1")
    if settings.reference not in REFERENCES:
        raise ConfigError(f"iterate.reference={settings.reference}: expected one of {list(REFERENCES)}")
    start = Path(str(settings.start)).expanduser() if settings.start else None
    if start is not None and not (start / "adapter_config.json").is_file():
        raise ConfigError(
            f"iterate.start={settings.start}: no adapter_config.json there (a `hipo train` final/ folder)"
        )
    if settings.reference == "start" and start is None:
        raise ConfigError("iterate.reference=start needs iterate.start (the policy every round is measured against)")
    return start


def round_paths(output_dir: Path, round_index: int) -> tuple[Path, Path]:
    """(the pairs file, the training output folder) of round ``round_index``."""
    folder = output_dir / f"round{round_index}"
    return folder / "pairs.jsonl", folder / "train"


def pairs_argv(cfg: DictConfig, round_index: int, policy: Path | None, out: Path, parent: str) -> list[str]:
    """``hipo pairs`` of one round: the experiment's ``iterate.pairs``, then what the round decides."""
    logger = cfg.logger
    argv = ["pairs", *[str(o) for o in cfg.iterate.pairs]]
    argv += [f"model.name_or_path={cfg.model.name_or_path}", f"model.dtype={cfg.model.dtype}"]
    argv += [f"checkpoint={policy}"] if policy is not None else ["model.lora.enabled=false"]
    argv += [f"out={out}", f"seed={int(cfg.seed) + round_index}", f"label=round{round_index}"]
    argv += [f"logger.tracking_uri={logger.tracking_uri}", f"logger.experiment_name={logger.experiment_name}"]
    argv += [f"logger.artifact_location={logger.artifact_location}", f"logger.parent_run_id={parent}"]
    argv += [f"logger.run_name=round{round_index}-pairs", f"hydra.run.dir={out.parent / 'pairs_log'}"]
    return argv


def train_argv(
    cfg: DictConfig, round_index: int, policy: Path | None, start: Path | None, pairs: Path, parent: str
) -> list[str]:
    """``hipo train`` of one round: the experiment, ``iterate.train``, the command's own overrides, the round's."""
    forwarded = [o for o in _task_overrides() if not o.startswith(_NOT_FORWARDED)]
    _, output_dir = round_paths(Path(str(cfg.output_dir)), round_index)
    argv = ["train", f"experiment={cfg.experiment}", *[str(o) for o in cfg.iterate.train], *forwarded]
    argv += ["data=jsonl", f"data.path={pairs}", f"output_dir={output_dir}", "resume=auto"]
    argv += [f"hydra.run.dir={output_dir}", f"logger.parent_run_id={parent}"]
    argv += [f"logger.run_name=round{round_index}-train", f"+logger.tags.hipo_round='{round_index}'"]
    if policy is not None:
        argv.append(f"model.adapter_path={policy}")
    if cfg.iterate.reference == "start" and start is not None and round_index > 0:
        argv.append(f"model.reference_adapter_path={start}")
    return argv


def iterate_command(cfg: DictConfig) -> dict[str, Any]:
    """Runs the experiment's rounds (see the module docstring); returns each round's outputs and step times."""
    with StopRequests().installed():
        return _iterate(cfg)


def _iterate(cfg: DictConfig) -> dict[str, Any]:
    start = check_iterate(cfg)
    output_dir = Path(str(cfg.output_dir))
    output_dir.mkdir(parents=True, exist_ok=True)
    logger = cfg.logger
    tags = {"hipo.kind": "iterate", "hipo.experiment": str(cfg.experiment), "hipo.git_commit": git_commit()}
    with tracked_run(
        tracking_uri=logger.tracking_uri,
        experiment_name=logger.experiment_name,
        run_name=logger.run_name or f"iterate-{cfg.experiment}",
        tags=tags,
        params={"iterate": OmegaConf.to_container(cfg.iterate, resolve=True), "seed": cfg.seed},
        artifact_location=logger.artifact_location,
        continue_run_id=run_to_continue(output_dir, logger.tracking_uri),
    ) as parent:
        write_run_record(output_dir, RunRecord(parent, logger.tracking_uri, logger.experiment_name))
        import mlflow

        mlflow.log_dict(resolved_config(cfg), "config/resolved.yaml", run_id=parent)
        policy, rounds = start, []
        for round_index in range(int(cfg.iterate.rounds)):
            pairs, train_dir = round_paths(output_dir, round_index)
            timings: dict[str, float] = {}
            if not pairs.is_file():
                argv = pairs_argv(cfg, round_index, policy, pairs, parent)
                timings["pairs_s"] = run_step("iterate", f"round {round_index} pairs", argv)
            final = train_dir / "final"
            if not (final / "hipo.json").is_file():
                argv = train_argv(cfg, round_index, policy, start, pairs, parent)
                timings["train_s"] = run_step("iterate", f"round {round_index} train", argv)
            mlflow.log_metrics({f"iterate/round{round_index}/{k}": v for k, v in timings.items()}, run_id=parent)
            rounds.append({"pairs": str(pairs), "policy": str(final), **timings})
            policy = final
    print(f"\nhipo iterate: {len(rounds)} rounds done; the last policy is {policy}")
    return {"run_id": parent, "rounds": rounds, "policy": str(policy)}
