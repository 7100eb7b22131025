"""Did the positive control's premise hold? Training margins per segment, and DPO's gradient factor, per method.

The prediction (experiments/LOG.md, 2026-12-02) needs DPO's whole-response margin to saturate on the training pairs
(sigma(-margin) -> 0) while the Mt margin alone does not. This prints, per method, the mean over seeds of each
segment's training reward margin (beta * log-ratio, chosen - rejected) over the first and the last 5 steps, and
over the last 5 steps sigma(-whole margin), DPO's per-pair gradient factor, next to sigma(-Mt margin), the factor of
HiPO's Mt term (each the mean over those steps of sigma(-the step's mean margin over its batch), then over
seeds). The premise holds when the first is small and the second is not.

    .venv/bin/python experiments/control_positive/saturation.py [--experiment control_saturation]
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict

import numpy as np
from mlflow.tracking import MlflowClient

TERMS = ("Mt", "Ra", "whole")
WINDOW = 5


def _history(client: MlflowClient, run_id: str, key: str) -> list[float]:
    points = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
    by_step = {m.step: m.value for m in points}
    return [by_step[s] for s in sorted(by_step)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--experiment", default="control_positive")
    args = parser.parse_args()
    client = MlflowClient(args.tracking_uri)
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        raise SystemExit(f"error: no MLflow experiment {args.experiment!r} in {args.tracking_uri}")
    early: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    late: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    factors: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))  # per run, last steps
    for run in client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'"):
        method = run.data.tags.get("hipo.method")
        if not method:
            continue
        for term in TERMS:
            values = _history(client, run.info.run_id, f"train/rewards/margin/{term}")
            if len(values) >= 2 * WINDOW:
                early[method][term].append(float(np.mean(values[:WINDOW])))
                late[method][term].append(float(np.mean(values[-WINDOW:])))
                factors[method][term].append(float(np.mean([_factor(m) for m in values[-WINDOW:]])))
    print(f"| method | seeds | {' | '.join(f'margin {t} (first {WINDOW} → last {WINDOW} steps)' for t in TERMS)} "
          f"| σ(−whole), last {WINDOW} | σ(−Mt), last {WINDOW} |")  # fmt: skip
    print("|---|---:|" + "---:|" * (len(TERMS) + 2))
    for method in sorted(late):
        cells = [f"{np.mean(early[method][t]):+.3f} → {np.mean(late[method][t]):+.3f}" for t in TERMS]
        whole, mt = (np.mean(factors[method][t]) for t in ("whole", "Mt"))
        print(f"| {method} | {len(late[method]['whole'])} | {' | '.join(cells)} | {whole:.3f} | {mt:.3f} |")


def _factor(margin: float) -> float:
    """sigma(-margin): a DPO term's gradient factor at this reward margin."""
    return 1 / (1 + math.exp(margin))


if __name__ == "__main__":
    main()
