"""Registers every schema in Hydra's ConfigStore and HiPO's OmegaConf resolvers (idempotent)."""

from __future__ import annotations

from hydra.core.config_store import ConfigStore
from omegaconf import Container, OmegaConf

from hipo.config import schema as s

# The one registry: every settings schema, by ConfigStore group and name. A YAML file of a group extends its schema
# through its defaults list (``- /schema/<group>/<name>@_here_``). ``_target_`` nodes (components) are not here:
# they are checked against their constructors (hipo.config.components.check_components).
ROOTS: dict[str, object] = {
    "schema_run": s.RunConfig,
    "schema_eval": s.EvalRunConfig,
    "schema_pairs": s.PairsRunConfig,
    "schema_report": s.ReportRunConfig,
}
SCHEMAS: dict[str, dict[str, object]] = {
    "schema/model": {"model": s.ModelConfig},
    "schema/data": {"data": s.DataConfig},
    "schema/trainer": {"trainer": s.TrainerConfig},
    "schema/logger": {"logger": s.LoggerConfig},
    "schema/benchmark": {"benchmark": s.BenchmarkConfig},
    "schema/problems": {"problems": s.ProblemsConfig},
}


def _num_terms(segments: list[str]) -> int:
    """Number of loss terms: one per segment plus the whole response."""
    return len(segments) + 1


def _even_stages(total_steps: int, num_stages: int) -> list[int]:
    """Lengths of the first ``num_stages - 1`` of ``num_stages`` near-equal stages of ``total_steps`` steps."""
    base, extra = divmod(int(total_steps), int(num_stages))
    if base < 1:
        raise ValueError(f"cannot split {total_steps} steps into {num_stages} stages of at least one step")
    return [base + (1 if index < extra else 0) for index in range(int(num_stages) - 1)]


def _tasks_per_node(devices: object) -> int:
    """``trainer.devices`` as SLURM tasks per node: one task per device, so it must be a positive number."""
    if isinstance(devices, int) and not isinstance(devices, bool) and devices > 0:
        return devices
    if isinstance(devices, str) and devices.isdigit() and int(devices) > 0:
        return int(devices)
    raise ValueError(
        f"hydra/launcher=slurm starts one task per device: set trainer.devices to the GPUs per node (got {devices!r})"
    )


def _choice(group: str, default: str | None = None, *, _root_: Container) -> str | None:
    """The option chosen for config group ``group`` (``experiment=demo`` -> ``demo``), else ``default``.

    Read from the config's own ``hydra`` node while it has one (Hydra builds its callbacks from the whole config
    before ``HydraConfig`` is set), else from ``HydraConfig`` (a job's config no longer has the node).
    """
    choices = OmegaConf.select(_root_, "hydra.runtime.choices")
    if choices is None:
        from hydra.core.hydra_config import HydraConfig

        choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    value = choices.get(group)
    return default if value is None else str(value)


def register_configs() -> None:
    """Stores the schemas (``schema_run`` and ``schema/<group>/<name>``) and the ``hipo.*`` resolvers."""
    store = ConfigStore.instance()
    perf_roots, perf_schemas = _perf_schemas()
    for name, node in {**ROOTS, **perf_roots}.items():
        store.store(name=name, node=node)
    for group, nodes in {**SCHEMAS, **perf_schemas}.items():
        for name, node in nodes.items():
            store.store(group=group, name=name, node=node)
    if not OmegaConf.has_resolver("hipo.num_terms"):
        OmegaConf.register_new_resolver("hipo.num_terms", _num_terms)
    if not OmegaConf.has_resolver("hipo.even_stages"):
        OmegaConf.register_new_resolver("hipo.even_stages", _even_stages)
    if not OmegaConf.has_resolver("hipo.choice"):
        OmegaConf.register_new_resolver("hipo.choice", _choice)
    if not OmegaConf.has_resolver("hipo.tasks_per_node"):
        OmegaConf.register_new_resolver("hipo.tasks_per_node", _tasks_per_node)


def _perf_schemas() -> tuple[dict[str, object], dict[str, dict[str, object]]]:
    """The throughput benchmark's root and groups (``hipo perf``; imported only when registering)."""
    from hipo.perf import config as perf

    return {"schema_perf": perf.PerfRootConfig}, {
        "schema/perf": {"shape": perf.ShapeConfig, "mix": perf.MixConfig, "suite": perf.SuiteConfig}
    }
