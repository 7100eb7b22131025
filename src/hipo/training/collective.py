"""The processes of a DDP job as a loss sees them (:class:`hipo.losses.types.BatchCollective`): torch.distributed."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn


class TorchCollective:
    """``BatchCollective`` over the default process group (initialised by Lightning's DDP strategy)."""

    def __init__(self) -> None:
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()

    def all_gather_sizes(self, rows: int) -> list[int]:
        sizes: list[int] = [0] * self.world_size
        dist.all_gather_object(sizes, rows)
        return [int(n) for n in sizes]

    def all_gather(self, tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        """Pads each process's rows to the largest count, gathers with autograd, and drops the padding."""
        longest = max(sizes)
        padding = longest - tensor.shape[0]
        if padding:
            tensor = torch.cat([tensor, tensor.new_zeros(padding, *tensor.shape[1:])])
        if tensor.is_floating_point():
            parts = dist_fn.all_gather(tensor)
        else:  # counts: no gradient to carry
            parts = [torch.empty_like(tensor) for _ in sizes]
            dist.all_gather(parts, tensor.contiguous())
        return torch.cat([part[:n] for part, n in zip(parts, sizes, strict=True)])

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total
