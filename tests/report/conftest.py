"""A fake sweep logged straight into a temporary MLflow store: 2 methods × 3 seeds, one failed child.

Per-sample records (10 problems p0..p9 of benchmark ``toy``), chosen so that the statistics are hand-computable:
    dpo  seeds 0, 1, 2: correct on p0..p4                      -> accuracy 0.5, 0.5, 0.5
    hipo seeds 0, 1:    correct on p0..p6; seed 2: p1..p6      -> accuracy 0.7, 0.7, 0.6
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mlflow.entities import Metric, RunStatus
from mlflow.tracking import MlflowClient

SEGMENTS = ("Rq", "Mt", "Ra", "whole")
PROBLEMS = [f"p{i}" for i in range(10)]
CORRECT = {
    ("dpo", 0): set(PROBLEMS[:5]),
    ("dpo", 1): set(PROBLEMS[:5]),
    ("dpo", 2): set(PROBLEMS[:5]),
    ("hipo", 0): set(PROBLEMS[:7]),
    ("hipo", 1): set(PROBLEMS[:7]),
    ("hipo", 2): set(PROBLEMS[1:7]),
}
# held-out final accuracy on Mt per (method, seed); the other segments get 0.5 + 0.1 * seed
VAL_MT = {("dpo", 0): 0.50, ("dpo", 1): 0.60, ("dpo", 2): 0.70, ("hipo", 0): 0.80, ("hipo", 1): 0.90, ("hipo", 2): 1.0}
# with_pairs: each child's held_out/pairs.csv has 4 pairs; margin/Mt = MT_PAIRS[method] + 0.01 * seed, and its
# val/rewards/margin/Mt is their mean (dpo 0.05, 0.06, 0.07; hipo 0.25, 0.26, 0.27)
MT_PAIRS = {"dpo": (0.1, 0.2, -0.1, 0.0), "hipo": (0.3, 0.4, 0.1, 0.2)}
JUDGE = {"logical_flow": 6.0, "final_answer_correctness": 8.0, "verbosity": 100.0}  # judge mean = 7 (no verbosity)


def _log_child(
    client: MlflowClient,
    experiment_id: str,
    parent_id: str,
    sweep_id: str,
    method: str,
    seed: int,
    with_train: bool,
    with_samples: bool,
    with_pairs: bool = False,
) -> str:
    tags = {
        "mlflow.parentRunId": parent_id,
        "hipo.sweep_id": sweep_id,
        "hipo.method": method,
        "hipo.loss": method,
        "hipo.seed": str(seed),
    }
    run_id = client.create_run(experiment_id, run_name=f"{method}-seed{seed}", tags=tags).info.run_id
    now = int(time.time() * 1000)
    metrics: list[Metric] = []
    if with_train:
        for step in range(5):
            for i, seg in enumerate(SEGMENTS):
                metrics.append(Metric(f"train/rewards/margin/{seg}", 0.1 * step * (i + 1) + 0.01 * seed, now, step))
                metrics.append(Metric(f"train/rewards/accuracy/{seg}", min(1.0, 0.5 + 0.1 * step), now, step))
            if method == "hipo":
                for i, seg in enumerate(SEGMENTS):
                    metrics.append(Metric(f"train/weight/{seg}", 0.25 + 0.01 * step * (i - 1.5), now, step))
    for seg in SEGMENTS:
        final = VAL_MT[(method, seed)] if seg == "Mt" else 0.5 + 0.1 * seed
        metrics += [
            Metric(f"val/rewards/accuracy/{seg}", 0.5, now, 0),
            Metric(f"val/rewards/accuracy/{seg}", final, now, 5),
        ]
    correct = CORRECT[(method, seed)]
    metrics.append(Metric("eval/toy/accuracy", len(correct) / len(PROBLEMS), now, 5))
    metrics += [Metric(f"eval/toy/judge/{k}", v + (1.0 if method == "hipo" else 0.0), now, 5) for k, v in JUDGE.items()]
    client.log_batch(run_id, metrics=metrics)
    if with_samples:
        records = [
            {"id": p, "prompt": f"q {p}", "generation": "...", "extracted": "1", "gold": "1", "correct": p in correct}
            for p in PROBLEMS
            if not (method == "hipo" and seed == 2 and p == "p9")  # a problem one seed skipped: still pooled
        ]
        client.log_dict(run_id, records, "eval/toy/samples.json")
    if with_pairs:
        margins = [m + 0.01 * seed for m in MT_PAIRS[method]]
        client.log_batch(run_id, metrics=[Metric("val/rewards/margin/Mt", sum(margins) / 4, now, 5)])
        lines = ["pair,margin/Rq,margin/Mt,margin/Ra,margin/whole"]
        lines += [f"{pair},,{margin!r},0.0,{margin!r}" for pair, margin in enumerate(margins)]
        client.log_text(run_id, "\n".join(lines) + "\n", "held_out/pairs.csv")
    client.set_terminated(run_id, "FINISHED")
    return run_id


@pytest.fixture
def fake_sweep(mlflow_uri: str, tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """Factory: logs the fake sweep; returns {uri, experiment, sweep_id, parent, children, failed}."""

    def make(
        with_train: bool = True, samples_missing_for: tuple[str, int] | None = None, with_pairs: bool = False
    ) -> dict[str, Any]:
        client = MlflowClient(mlflow_uri)
        experiment_id = client.create_experiment("fake", artifact_location=(tmp_path / "artifacts").as_uri())
        sweep_id = "fake-sweep-1"
        parent_tags = {
            "hipo.sweep_id": sweep_id,
            "hipo.role": "sweep",
            "hipo.experiment": "ablation_fake",
            "hipo.overrides": "loss=dpo,hipo seed=0,1,2",
        }
        parent = client.create_run(experiment_id, run_name="sweep-fake", tags=parent_tags).info.run_id
        children = [
            _log_child(
                client, experiment_id, parent, sweep_id, m, s, with_train, (m, s) != samples_missing_for, with_pairs
            )
            for m in ("dpo", "hipo")
            for s in range(3)
        ]
        failed_tags = {"mlflow.parentRunId": parent, "hipo.sweep_id": sweep_id, "hipo.method": "hipo", "hipo.seed": "3"}
        failed = client.create_run(experiment_id, run_name="hipo-seed3", tags=failed_tags).info.run_id
        client.log_batch(failed, metrics=[Metric("eval/toy/accuracy", 0.0, 0, 0)])  # would drag the mean down
        client.set_terminated(failed, RunStatus.to_string(RunStatus.FAILED))
        client.set_terminated(parent, "FAILED")
        return {
            "uri": mlflow_uri,
            "experiment": "fake",
            "sweep_id": sweep_id,
            "parent": parent,
            "children": children,
            "failed": failed,
        }

    return make
