"""Running the real ``hipo`` command in a subprocess, as a user would, and reading what it left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

HELPERS = Path(__file__).resolve().parent  # put on PYTHONPATH: the subprocesses import its sitecustomize.py

# float32 whatever the host: `trainer.precision=auto` picks bf16-mixed on CPUs with native bf16, and these runs compare
# numbers (auto's resolution is tested in tests/training/test_precision.py)
TINY = ["model=tiny", "trainer.enable_progress_bar=false", "trainer.precision=32-true", "optim.lr=1e-3"]
TINY_TRAIN = [*TINY, "data.source.num_pairs=24", "data.val_source.num_pairs=8"]  # small synthetic data


@dataclass
class Finished:
    """A finished ``hipo`` process."""

    returncode: int
    stdout: str
    stderr: str


def isolated_cache(root: Path) -> Path:
    """A HiPO cache folder under ``root`` that shares the converted embedded model (like ``isolated_data_cache``)."""
    real = Path(os.environ.get("HIPO_CACHE", Path.home() / ".cache" / "hipo"))
    cache = root / "hipo-cache"
    (cache / "models").mkdir(parents=True, exist_ok=True)
    model_dir = real / "models" / "smollm2-135m-instruct"
    link = cache / "models" / "smollm2-135m-instruct"
    if model_dir.exists() and not link.exists():
        link.symlink_to(model_dir)
    return cache


def run_hipo(
    args: list[str], cwd: Path, cache: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> Finished:
    """``python -m hipo.cli <args>`` in ``cwd`` with the data cache ``cache`` and the fault-injection helpers."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("HIPO_MLFLOW", "HIPO_SWEEP"))}
    environment.update({"HIPO_CACHE": str(cache), "PYTHONPATH": str(HELPERS), **(env or {})})
    proc = subprocess.run(
        [sys.executable, "-m", "hipo.cli", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Finished(proc.returncode, proc.stdout, proc.stderr)


def final_weights(output_dir: Path) -> dict[str, torch.Tensor]:
    """The tensors ``hipo train`` saved under ``output_dir/final`` (full model or adapter)."""
    folder = output_dir / "final"
    files = sorted(folder.glob("*.safetensors"))
    assert files, f"no safetensors in {folder}"
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        tensors.update(load_file(file))
    return tensors


def runs_of(tracking_uri: str, experiment: str) -> list:
    """Every run of an MLflow experiment (empty when the experiment does not exist)."""
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id])


def history(tracking_uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    """``[(step, value)]`` of a metric, in the order recorded."""
    return [(m.step, m.value) for m in MlflowClient(tracking_uri).get_metric_history(run_id, key)]


def write_pairs(path: Path, num_pairs: int = 24, seed: int = 0) -> Path:
    """A JSONL file of ``{prompt, chosen, rejected}`` rows with ``<Rq>…</Rq>`` tags (``segmenter=tags``)."""
    import json

    from hipo.data.sources.synthetic import SyntheticSource

    rows = SyntheticSource(num_pairs=num_pairs, seed=seed, format="tags").rows()
    lines = [json.dumps({"prompt": r["question"], "chosen": r["chosen"], "rejected": r["rejected"]}) for _, r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path
