"""Where this process stands in a multi-process job, and the job's process group.

A job runs on ``world_size`` processes: ``devices`` per node times ``num_nodes``. They are created either by HiPO
itself (one node: :mod:`hipo.distributed.launcher` starts ``devices - 1`` workers next to the ``hipo`` process),
or by a cluster launcher (SLURM's ``srun`` through the submitit launcher, or ``torchrun``) that starts every rank.
Either way each process learns its place from the environment (:func:`current_process`), and the job opens ONE
``torch.distributed`` process group early (:func:`job_process_group`), before the model is loaded, so the ranks can
agree on who writes what (rank 0 writes the data and reference caches, the MLflow run, checkpoints and ``final/``;
the others wait at a barrier and read). Lightning finds the group already initialized and uses it.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from hipo.errors import ConfigError

MULTI_PROCESS_STRATEGIES = ("ddp", "fsdp", "deepspeed")
PROCESS_GROUP_TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class ProcessInfo:
    """This process's place in the job.

    Attributes:
        rank: global rank (0..world_size-1); rank 0 writes everything the job writes.
        local_rank: rank on this node (the GPU index it uses).
        world_size: number of processes of the job.
        node_rank: index of this node.
        launched_by: ``hipo`` (workers started by HiPO), ``slurm``, ``torchrun`` or ``none`` (one process).
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    node_rank: int = 0
    launched_by: str = "none"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def current_process() -> ProcessInfo:
    """The process's place from the environment: HiPO's workers and torchrun set ``RANK``/``WORLD_SIZE``,
    SLURM sets ``SLURM_PROCID``/``SLURM_NTASKS`` (a job step with several tasks); otherwise a single process."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        launched_by = "hipo" if env.get("HIPO_WORKER_OF") or env.get("HIPO_LAUNCHED") else "torchrun"
        node = env.get("NODE_RANK", env.get("GROUP_RANK", "0"))
        return ProcessInfo(
            int(env["RANK"]), int(env.get("LOCAL_RANK", 0)), int(env["WORLD_SIZE"]), int(node), launched_by
        )
    if _in_slurm_step() and int(env.get("SLURM_NTASKS", "1")) > 1:
        return ProcessInfo(
            int(env["SLURM_PROCID"]),
            int(env.get("SLURM_LOCALID", 0)),
            int(env["SLURM_NTASKS"]),
            int(env.get("SLURM_NODEID", 0)),
            "slurm",
        )
    return ProcessInfo()


def _in_slurm_step() -> bool:
    """Lightning's rule: inside a SLURM allocation that is not an interactive shell."""
    from lightning.fabric.plugins.environments import SLURMEnvironment

    return SLURMEnvironment.detect()


def is_multi_process_strategy(strategy: str) -> bool:
    """Whether a Lightning strategy name runs one process per device (DDP, FSDP, DeepSpeed and their variants)."""
    name = str(strategy).lower()
    return name.startswith(MULTI_PROCESS_STRATEGIES) and "spawn" not in name and "notebook" not in name


def devices_per_node(accelerator: str, devices: Any) -> int:
    """How many processes one node runs for ``trainer.devices`` (Lightning's own parsing of the value).

    Raises:
        ConfigError: a value Lightning would refuse (e.g. ``-1`` on CPU, more GPUs than the node has).
    """
    accelerator = str(accelerator).lower()
    use_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    try:
        if use_gpu:
            from lightning.pytorch.accelerators import CUDAAccelerator

            parsed = CUDAAccelerator.parse_devices(devices)
            return len(parsed) if parsed else 0
        from lightning.pytorch.accelerators import CPUAccelerator

        return int(CPUAccelerator.parse_devices(1 if devices == "auto" else devices))
    except Exception as error:  # Lightning raises MisconfigurationException / TypeError / ValueError
        raise ConfigError(f"trainer.devices={devices!r} with trainer.accelerator={accelerator}: {error}") from error


def process_group_backend(accelerator: str) -> str:
    """``nccl`` on GPUs, ``gloo`` on CPUs (what Lightning would pick for the job's device)."""
    accelerator = str(accelerator).lower()
    use_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return "nccl" if use_gpu else "gloo"


@contextlib.contextmanager
def job_process_group(process: ProcessInfo, backend: str) -> Iterator[None]:
    """The job's default process group (``env://``: ``MASTER_ADDR``/``MASTER_PORT``), destroyed at the end.

    A single process opens nothing. Under SLURM the address and port are Lightning's (``SLURMEnvironment``), so any
    rank computes the same rendezvous.
    """
    if not process.distributed:
        yield
        return
    if process.launched_by == "slurm":
        from lightning.fabric.plugins.environments import SLURMEnvironment

        environment = SLURMEnvironment()
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = environment.main_address, str(environment.main_port)
    kwargs: dict[str, Any] = {}
    if backend == "nccl":
        torch.cuda.set_device(process.local_rank)
        kwargs["device_id"] = torch.device("cuda", process.local_rank)
    dist.init_process_group(
        backend, rank=process.rank, world_size=process.world_size, timeout=PROCESS_GROUP_TIMEOUT, **kwargs
    )
    try:
        yield
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def barrier() -> None:
    """Waits for every rank (no-op without a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


@contextlib.contextmanager
def rank_zero_first(process: ProcessInfo) -> Iterator[None]:
    """Rank 0 runs the body first (writing a cache); the other ranks run it after, reading what rank 0 wrote."""
    if process.distributed and not process.is_main:
        barrier()
    yield
    if process.distributed and process.is_main:
        barrier()


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` is set on any rank (one all-reduce; the flag itself without a process group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    value = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def gather_to_all(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (a list indexed by rank); ``[obj]`` without a process group."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
