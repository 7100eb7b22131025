"""Held-out preference accuracy per segment, accumulated exactly over a whole validation set, and each pair's
margins (the records ``hipo report`` tests over pairs); the held-out NLL of the chosen responses per segment."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from hipo.losses.types import SegmentLogps

HELD_OUT_PAIRS = "held_out/pairs.csv"  # each held-out pair's margins after training: output dir and MLflow artifact


class HeldOutPreferenceMetrics:
    """Accumulates implicit-reward margins of held-out pairs, per segment and for the whole response.

    The implicit reward of a response segment is ``beta * (log pi - log pi_ref)`` summed over its tokens. A pair's
    margin for term k is chosen minus rejected. Accuracy counts a positive margin as 1, an exact tie as 1/2 (so a
    policy equal to its reference scores chance, 0.5, instead of 0) and a negative margin as 0. Terms empty on both
    sides of a pair are left out of that term's statistics.
    """

    def __init__(self, names: list[str]) -> None:
        self.names = list(names)
        self.reset()

    def reset(self) -> None:
        n = len(self.names)
        self.margin_sum = torch.zeros(n, dtype=torch.float64)
        self.correct = torch.zeros(n, dtype=torch.float64)
        self.present = torch.zeros(n, dtype=torch.float64)
        self.pair_margins: dict[int, list[float]] = {}  # pair id -> margin per term (nan: absent on both sides)

    @torch.no_grad()
    def update(
        self,
        policy: SegmentLogps,
        reference: SegmentLogps,
        beta: float,
        valid: torch.Tensor | None = None,
        pair_ids: torch.Tensor | None = None,
    ) -> None:
        """Adds one paired batch: rows 0..B-1 chosen, B..2B-1 rejected; sums/counts [2B, S+1].

        ``valid`` [B] bool leaves out padding pairs (equal-length validation shards over several ranks).
        ``pair_ids`` [B] (the pairs' indices in the validation set) also keeps each valid pair's margins.
        """
        if policy.sums.shape != reference.sums.shape:
            raise ValueError(f"policy {tuple(policy.sums.shape)} and reference {tuple(reference.sums.shape)} differ")
        if policy.sums.shape[1] != len(self.names):
            raise ValueError(f"expected {len(self.names)} terms ({self.names}), got {policy.sums.shape[1]}")
        pairs = policy.sums.shape[0] // 2
        rewards = beta * (policy.sums - reference.sums).double().cpu()
        margins = rewards[:pairs] - rewards[pairs:]
        counts = policy.counts.cpu()
        present = ((counts[:pairs] > 0) | (counts[pairs:] > 0)).double()
        if valid is not None:
            present = present * valid.reshape(-1, 1).double().cpu()
        score = (margins > 0).double() + 0.5 * (margins == 0).double()
        self.margin_sum += (margins * present).sum(0)
        self.correct += (score * present).sum(0)
        self.present += present.sum(0)
        if pair_ids is not None:
            kept = margins.masked_fill(present == 0, float("nan"))
            for row, pair in enumerate(pair_ids.tolist()):
                if valid is None or bool(valid[row]):
                    self.pair_margins[int(pair)] = kept[row].tolist()

    def all_reduce(self) -> None:
        """Sums the accumulators over every rank of the default process group (exact: sums and counts, float64)."""
        import torch.distributed as dist

        stacked = torch.stack([self.margin_sum, self.correct, self.present])
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        reduced = stacked.to(device)
        dist.all_reduce(reduced)
        self.margin_sum, self.correct, self.present = reduced.cpu().unbind(0)
        shards: list[dict[int, list[float]] | None] = [None] * dist.get_world_size()
        dist.all_gather_object(shards, self.pair_margins)
        self.pair_margins = {pair: row for shard in shards if shard for pair, row in shard.items()}

    def compute(self) -> dict[str, float]:
        """``rewards/accuracy/<name>``, ``rewards/margin/<name>`` and ``pairs/<name>`` over everything added."""
        out: dict[str, float] = {}
        for i, name in enumerate(self.names):
            n = float(self.present[i])
            if n == 0:
                continue
            out[f"rewards/accuracy/{name}"] = float(self.correct[i]) / n
            out[f"rewards/margin/{name}"] = float(self.margin_sum[i]) / n
            out[f"pairs/{name}"] = n
        return out

    def write_pairs(self, path: Path) -> Path:
        """Writes each kept pair's margins as CSV: ``pair,margin/<term>...`` sorted by pair (empty: term absent).

        A pair's accuracy on a term follows from its margin (> 0: 1, = 0: 1/2, < 0: 0), so the margins are the
        whole record.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["pair", *(f"margin/{name}" for name in self.names)])
            for pair in sorted(self.pair_margins):
                row = self.pair_margins[pair]
                writer.writerow([pair, *("" if value != value else repr(value) for value in row)])
        return path


class HeldOutNLL:
    """Accumulates the per-token mean negative log-likelihood of held-out chosen responses, per segment and whole.

    ``nll/<name>`` = −(Σ log-probs of the term's tokens) / (number of those tokens), over every response added: the
    quantity SFT minimizes, and one a preference loss can drive up (the chosen responses' likelihood falling).
    """

    def __init__(self, names: list[str]) -> None:
        self.names = list(names)
        self.reset()

    def reset(self) -> None:
        self.logp_sum = torch.zeros(len(self.names), dtype=torch.float64)
        self.tokens = torch.zeros(len(self.names), dtype=torch.float64)

    @torch.no_grad()
    def update(self, chosen: SegmentLogps, valid: torch.Tensor | None = None) -> None:
        """Adds chosen responses: sums/counts [N, S+1]; ``valid`` [N] bool leaves out padding rows."""
        if chosen.sums.shape[1] != len(self.names):
            raise ValueError(f"expected {len(self.names)} terms ({self.names}), got {chosen.sums.shape[1]}")
        keep = valid.reshape(-1, 1).double().cpu() if valid is not None else 1.0
        self.logp_sum += (chosen.sums.double().cpu() * keep).sum(0)
        self.tokens += (chosen.counts.double().cpu() * keep).sum(0)

    def all_reduce(self) -> None:
        """Sums the accumulators over every rank of the default process group."""
        import torch.distributed as dist

        stacked = torch.stack([self.logp_sum, self.tokens])
        reduced = stacked.to("cuda" if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(reduced)
        self.logp_sum, self.tokens = reduced.cpu().unbind(0)

    def compute(self) -> dict[str, float]:
        """``nll/<name>`` and ``tokens/<name>`` for every term with tokens."""
        out: dict[str, float] = {}
        for i, name in enumerate(self.names):
            if float(self.tokens[i]) > 0:
                out[f"nll/{name}"] = -float(self.logp_sum[i]) / float(self.tokens[i])
                out[f"tokens/{name}"] = float(self.tokens[i])
        return out
