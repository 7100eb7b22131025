"""Rank bookkeeping of a 2-process CPU job (gloo): who writes first, agreeing on a flag, exact held-out sums."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from hipo.distributed.launcher import free_port
from hipo.distributed.processes import (
    ProcessInfo,
    any_rank,
    current_process,
    devices_per_node,
    gather_to_all,
    is_multi_process_strategy,
    job_process_group,
    rank_zero_first,
)
from hipo.errors import ConfigError
from hipo.losses.types import SegmentLogps
from hipo.training.held_out import HeldOutPreferenceMetrics


def _worker(rank: int, port: int, folder: str) -> None:
    process = ProcessInfo(rank=rank, local_rank=rank, world_size=2, launched_by="hipo")
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    with job_process_group(process, "gloo"):
        cache = Path(folder) / "cache.txt"
        with rank_zero_first(process):  # rank 0 computes and writes; rank 1 waits, then finds it
            if cache.exists():
                (Path(folder) / f"read-{rank}").write_text(cache.read_text())
            else:
                cache.write_text(f"computed by {rank}")
        assert any_rank(rank == 1) and not any_rank(False)
        assert gather_to_all(rank * 10) == [0, 10]
        # each rank scores its own pairs; the all-reduced sums equal those of one process scoring all of them
        metrics = HeldOutPreferenceMetrics(["a", "whole"])
        torch.manual_seed(0)
        policy, reference = torch.randn(8, 2), torch.randn(8, 2)  # 4 pairs: rows 0-3 chosen, 4-7 rejected
        counts = torch.ones(8, 2, dtype=torch.long)
        mine = [rank, rank + 2]
        rows = mine + [p + 4 for p in mine]
        valid = torch.tensor([True, rank == 0])  # rank 1's second pair is shard padding
        metrics.update(
            SegmentLogps(policy[rows], counts[rows]),
            SegmentLogps(reference[rows], counts[rows]),
            1.0,
            valid,
            pair_ids=torch.tensor([rank, -1 if rank == 1 else rank + 2]),
        )
        metrics.all_reduce()
        (Path(folder) / f"metrics-{rank}").write_text(repr(metrics.compute()))
        metrics.write_pairs(Path(folder) / f"pairs-{rank}.csv")  # every rank holds every pair after the gather


@pytest.mark.slow  # spawns two worker processes (gloo)
def test_rank_zero_writes_first_and_held_out_sums_are_exact(tmp_path: Path) -> None:
    mp.start_processes(_worker, args=(free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    assert (tmp_path / "cache.txt").read_text() == "computed by 0"
    assert (tmp_path / "read-1").read_text() == "computed by 0" and not (tmp_path / "read-0").exists()

    single = HeldOutPreferenceMetrics(["a", "whole"])
    torch.manual_seed(0)
    policy, reference = torch.randn(8, 2), torch.randn(8, 2)
    counts = torch.ones(8, 2, dtype=torch.long)
    rows = [0, 1, 2, 4, 5, 6]  # pairs 0, 1, 2 (pair 3 was rank 1's padding)
    single.update(
        SegmentLogps(policy[rows], counts[rows]),
        SegmentLogps(reference[rows], counts[rows]),
        1.0,
        pair_ids=torch.tensor([0, 1, 2]),
    )
    assert (tmp_path / "metrics-0").read_text() == (tmp_path / "metrics-1").read_text() == repr(single.compute())
    expected = single.write_pairs(tmp_path / "pairs-single.csv").read_text()
    assert (tmp_path / "pairs-0.csv").read_text() == (tmp_path / "pairs-1.csv").read_text() == expected


def test_process_info_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_NTASKS", "SLURM_JOB_NAME", "HIPO_LAUNCHED"):
        monkeypatch.delenv(name, raising=False)
    assert current_process() == ProcessInfo()
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("NODE_RANK", "1")
    assert current_process() == ProcessInfo(3, 1, 4, 1, "torchrun")
    monkeypatch.setenv("HIPO_LAUNCHED", "1")
    assert current_process().launched_by == "hipo"


def test_strategies_and_devices() -> None:
    assert is_multi_process_strategy("ddp") and is_multi_process_strategy("fsdp")
    assert is_multi_process_strategy("deepspeed_stage_2") and not is_multi_process_strategy("ddp_spawn")
    assert not is_multi_process_strategy("auto")
    assert devices_per_node("cpu", 2) == 2 and devices_per_node("cpu", "auto") == 1
    with pytest.raises(ConfigError, match="trainer.devices=-1"):
        devices_per_node("cpu", -1)
