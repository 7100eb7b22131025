"""Perf records, the ratios between variants, the printed table and the JSON file."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hipo.perf.config import METRICS, RatioConfig

TIME_METRICS = ("median_step_s", "median_loop_step_s")  # a ratio of times: (ratio - 1) is the numerator's overhead


@dataclass
class VariantResult:
    """Measurements of one variant (timed steps only).

    ``useful_tokens_per_s`` = sum over the distinct batches seen of their scored response tokens / sum of each
    batch's MEDIAN step time (robust to load spikes, and every batch weighs once whatever the step count).
    ``loop_step_s``: each timed step's loop span (:mod:`hipo.perf.clock`: the step and everything the training loop
    does until the next one); empty where no loop ran around the steps.
    """

    variant: str
    settings: dict[str, Any]
    step_s: list[float]
    useful_tokens: list[int]
    losses: list[float]
    batch_index: list[int]
    peak_memory_gib: float
    baseline_memory_gib: float
    memory_method: str
    setup_s: float
    reference_setup_s: float
    trainable_parameters: int
    device: str
    loop_step_s: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median_step_s(self) -> float:
        return float(statistics.median(self.step_s))

    @property
    def median_loop_step_s(self) -> float | None:
        return float(statistics.median(self.loop_step_s)) if self.loop_step_s else None

    @property
    def useful_tokens_per_s(self) -> float:
        tokens_of: dict[int, int] = {}
        seconds_of: dict[int, list[float]] = {}
        for index, seconds, tokens in zip(self.batch_index, self.step_s, self.useful_tokens, strict=True):
            tokens_of[index] = tokens
            seconds_of.setdefault(index, []).append(seconds)
        total_seconds = sum(statistics.median(times) for times in seconds_of.values())
        return sum(tokens_of.values()) / total_seconds if total_seconds > 0 else 0.0

    def record(self) -> dict[str, Any]:
        """The JSON record: the required keys first, then the details."""
        return {
            "variant": self.variant,
            "useful_tokens_per_s": self.useful_tokens_per_s,
            "median_step_s": self.median_step_s,
            "peak_memory_gib": self.peak_memory_gib,
            "median_loop_step_s": self.median_loop_step_s,
            **self.settings,
            "step_s": self.step_s,
            "loop_step_s": self.loop_step_s,
            "useful_tokens_per_step": self.useful_tokens,
            "batch_index": self.batch_index,
            "loss": self.losses,
            "baseline_memory_gib": self.baseline_memory_gib,
            "memory_method": self.memory_method,
            "setup_s": self.setup_s,
            "reference_setup_s": self.reference_setup_s,
            "trainable_parameters": self.trainable_parameters,
            "device": self.device,
            **self.extra,
        }


def compute_ratios(records: dict[str, dict[str, Any]], ratios: list[RatioConfig]) -> list[dict[str, Any]]:
    """Each ratio's value and whether it meets its target (None when no target); unknown names raise."""
    out = []
    for ratio in ratios:
        if ratio.metric not in METRICS:
            raise ValueError(f"perf.suite.ratios[{ratio.name}].metric must be one of {METRICS}, got {ratio.metric!r}")
        for side in (ratio.numerator, ratio.denominator):
            if side not in records:
                raise ValueError(f"perf.suite.ratios[{ratio.name}] names {side!r}, not a variant: {sorted(records)}")
            if records[side].get(ratio.metric) is None:
                raise ValueError(f"perf.suite.ratios[{ratio.name}]: variant {side!r} has no {ratio.metric}")
        denominator = float(records[ratio.denominator][ratio.metric])
        value = float(records[ratio.numerator][ratio.metric]) / denominator if denominator else float("nan")
        met = None
        if ratio.target is not None:
            met = value <= ratio.target if ratio.direction == "le" else value >= ratio.target
        out.append({**vars(ratio), "value": value, "met": met})
    return out


def format_table(records: list[dict[str, Any]], ratios: list[dict[str, Any]]) -> str:
    """A plain-text table of the variants and their ratios."""
    lines = [
        f"{'variant':<24} {'useful tok/s':>13} {'median step s':>14} {'loop step s':>12} {'peak GiB':>9} "
        f"{'trainable':>12} {'step-0 loss':>12}"
    ]
    for r in records:
        loop = r.get("median_loop_step_s")
        lines.append(
            f"{r['variant']:<24} {r['useful_tokens_per_s']:>13.1f} {r['median_step_s']:>14.3f} "
            f"{'-' if loop is None else f'{loop:.3f}':>12} {r['peak_memory_gib']:>9.2f} "
            f"{r['trainable_parameters']:>12,} {r.get('step0_loss', float('nan')):>12.6f}"
        )
    if ratios:
        lines.append("")
        lines.append("ratios (same run):")
        for q in ratios:
            target = "" if q["target"] is None else f"  target {'<=' if q['direction'] == 'le' else '>='} {q['target']}"
            verdict = "" if q["met"] is None else ("  MET" if q["met"] else "  NOT MET")
            overhead = f" ({100 * (q['value'] - 1):+.1f} %)" if q["metric"] in TIME_METRICS else ""
            lines.append(
                f"  {q['name']}: {q['numerator']} / {q['denominator']} ({q['metric']}) = {q['value']:.3f}"
                f"{overhead}{target}{verdict}"
            )
    return "\n".join(lines)


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    """Writes the perf JSON (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path
