"""Multi-process jobs: where a process stands (rank, world size), the job's process group, HiPO's local launcher."""

from hipo.distributed.processes import (
    ProcessInfo,
    any_rank,
    barrier,
    current_process,
    devices_per_node,
    gather_to_all,
    is_multi_process_strategy,
    job_process_group,
    process_group_backend,
    rank_zero_first,
)

__all__ = [
    "ProcessInfo",
    "any_rank",
    "barrier",
    "current_process",
    "devices_per_node",
    "gather_to_all",
    "is_multi_process_strategy",
    "job_process_group",
    "process_group_backend",
    "rank_zero_first",
]
