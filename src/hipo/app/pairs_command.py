"""`hipo pairs`: on-policy preference pairs -- a model's own samples on training problems, graded, paired.

The phases (each fails before the next spends anything):

1. **check**: settings, the segmenter, the training problems and their check against the held-out benchmark
   (:mod:`hipo.onpolicy.problems`), and the samples file of an earlier run of the same command (resumed) -- bad
   input ends here, exit 2, before any model loads or any MLflow run exists;
2. **sample**: the model (base, adapter or `hipo train` output, as ``hipo eval`` loads it; ``evaluate.engine=vllm``
   where installed) samples K responses per problem not yet in the samples file, chunk by chunk
   (:mod:`hipo.onpolicy.samples`), each graded with the grader of ``hipo eval``;
3. **pair**: every sample is segmented (:mod:`hipo.onpolicy.segmentation`), pairs are selected
   (:mod:`hipo.onpolicy.selection`) and written to ``out`` (a temporary file renamed into place); pass@1, pass@K,
   the no-answer rate, problems with a pair, pairs written and tokens/s are printed and logged to the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import mlflow
from omegaconf import DictConfig, OmegaConf

from hipo.app.builders import build_segmenter
from hipo.app.eval_command import generation_config
from hipo.app.eval_model import load_engine, resolve_eval_target
from hipo.config.secrets import redact_secrets
from hipo.data.segmenters.fields import FieldsSegmenter
from hipo.data.sources.base import file_digest
from hipo.errors import ConfigError, config_errors
from hipo.eval.generation import GenerationConfig, HFGenerator, TextGenerator
from hipo.eval.sampling_metrics import k_values, pass_at_k
from hipo.onpolicy.problems import TrainingProblems, check_not_held_out, load_training_problems
from hipo.onpolicy.samples import ProblemSamples, SampleFile, SamplingProgress, sample_problems
from hipo.onpolicy.segmentation import SegmentationCounts, usable_samples
from hipo.onpolicy.selection import SelectionCounts, check_selection, pair_rows
from hipo.tracking.run import git_commit, tracked_run
from hipo.training.preemption import StopRequests

SAMPLES_SUFFIX = ".samples.jsonl"
_FULL_DIGEST_BYTES = 256 * 2**20  # larger weight files are identified by size and modification time


def samples_path(out: Path) -> Path:
    """``<out>.samples.jsonl``: the graded samples behind ``out`` (and the progress a rerun resumes from)."""
    return out.with_name(out.name + SAMPLES_SUFFIX)


def _file_identity(path: Path) -> str:
    stat = path.stat()
    if stat.st_size <= _FULL_DIGEST_BYTES:
        return file_digest(path)
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def _weights_identity(cfg: DictConfig) -> dict[str, str]:
    """The files that decide the sampling policy's weights beyond its name: adapter, checkpoint, model folder."""
    target = resolve_eval_target(cfg)
    files: list[Path] = []
    if target.lightning_checkpoint is not None:
        files.append(target.lightning_checkpoint)
    for folder in (target.model_cfg.adapter_path, target.model_cfg.name_or_path):
        if folder and Path(str(folder)).is_dir():
            files += sorted(Path(str(folder)).glob("*.safetensors")) + sorted(Path(str(folder)).glob("*.bin"))
    return {str(path): _file_identity(path) for path in files}


def sampling_settings(cfg: DictConfig, problems: TrainingProblems, generation: GenerationConfig) -> dict[str, Any]:
    """Everything the samples depend on (hashed into the samples file's fingerprint)."""
    target = resolve_eval_target(cfg)
    ids = hashlib.sha256("\n".join(item.id for item in problems.items).encode()).hexdigest()
    return {
        "model": target.description,
        "dtype": str(cfg.model.dtype),
        "weights": _weights_identity(cfg),
        "engine": str(cfg.evaluate.engine),
        "generation": {k: v for k, v in vars(generation).items() if k not in ("progress", "batch_size", "memory_gib")},
        "problems": {
            "benchmark": problems.benchmark,
            "source": problems.source,
            "ids": ids,
            "count": len(problems.items),
        },
        "answer_format": problems.answer_format,
        "chunk_size": int(cfg.chunk_size),
    }


def _check_settings(cfg: DictConfig) -> GenerationConfig:
    """The decoding settings, after the checks that need no data (exit 2 on a bad value, naming the key)."""
    if int(cfg.num_samples) < 2:
        raise ConfigError(f"num_samples={cfg.num_samples}: a pair needs two samples of a problem; use >= 2")
    if int(cfg.chunk_size) < 1:
        raise ConfigError(f"chunk_size={cfg.chunk_size}: must be >= 1")
    with config_errors("selection"):
        check_selection(str(cfg.selection.mode), int(cfg.selection.max_pairs_per_problem))
    with config_errors("evaluate.generation"):
        generation = generation_config(cfg.evaluate.generation)
    if not generation.do_sample or generation.n != int(cfg.num_samples):
        raise ConfigError(
            f"evaluate.generation: on-policy pairs need do_sample=true and n=num_samples ({cfg.num_samples}); "
            f"got do_sample={generation.do_sample}, n={generation.n}"
        )
    return generation


def _metrics(
    samples: list[ProblemSamples],
    selection: SelectionCounts,
    segmentation: SegmentationCounts,
    progress: SamplingProgress,
    k: int,
) -> dict[str, float]:
    """``pairs/*`` metrics of the whole run (over every problem, resumed ones included)."""
    graded = [c for s in samples for c in s.correct]
    no_answer = sum(e is None for s in samples for e in s.extracted)
    metrics = {
        "pairs/problems": float(len(samples)),
        "pairs/samples": float(len(graded)),
        "pairs/no_answer_rate": no_answer / max(len(graded), 1),
        "pairs/problems_with_pair": float(selection.with_pair),
        "pairs/problems_all_correct": float(selection.all_correct),
        "pairs/problems_all_incorrect": float(selection.all_incorrect),
        "pairs/pairs_written": float(selection.pairs),
        "pairs/segmented": float(segmentation.segmented),
        "pairs/single_segment": float(segmentation.single_segment),
        "pairs/segmentation_failed": float(segmentation.failed),
        "pairs/empty": float(segmentation.empty),
        "pairs/tokens_per_second": progress.tokens_per_second,
        "pairs/sampled_this_run": float(progress.problems),
    }
    for value in k_values(k):
        metrics[f"pairs/pass_at_{value}"] = sum(pass_at_k(k, sum(s.correct), value) for s in samples) / max(
            len(samples), 1
        )
    return metrics


def format_pairs_table(metrics: dict[str, float], k: int) -> str:
    """A Markdown table of what sampling and selection found."""
    lines = [
        f"| problems | samples | pass@1 | pass@{k} | no answer | with a pair | pairs | unsegmented | tokens/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {int(metrics['pairs/problems'])} | {int(metrics['pairs/samples'])} | {metrics['pairs/pass_at_1']:.3f} | "
        f"{metrics[f'pairs/pass_at_{k}']:.3f} | {metrics['pairs/no_answer_rate']:.3f} | "
        f"{int(metrics['pairs/problems_with_pair'])} | {int(metrics['pairs/pairs_written'])} | "
        f"{int(metrics['pairs/segmentation_failed'])} | {metrics['pairs/tokens_per_second']:.1f} |",
    ]
    return "\n".join(lines)


def write_jsonl_atomically(path: Path, rows: list[dict[str, Any]]) -> None:
    """``rows`` as JSON lines at ``path``: written to a temporary file in the same folder, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def pairs_command(cfg: DictConfig) -> dict[str, Any]:
    """`hipo pairs` (see the module docstring). Returns the run id, the metrics and the paths written.

    A stop signal (SIGTERM, SIGUSR1, Ctrl+C) ends the job at once: its run is KILLED, the finished chunks stay in
    the samples file, and the exit code is 128 + the signal; rerun, it resumes.
    """
    with StopRequests().installed():
        return _pairs(cfg)


def _pairs(cfg: DictConfig) -> dict[str, Any]:
    started = time.perf_counter()
    generation = _check_settings(cfg)
    with config_errors("segmenter"):
        segmenter = build_segmenter(cfg.segmenter)
    if isinstance(segmenter, FieldsSegmenter):
        raise ConfigError(
            "segmenter=fields reads pre-decomposed columns; generated responses need segmenter=tags (a model that "
            "answers in Rq/Mt/Ra sections), rules or llm"
        )
    problems = load_training_problems(str(cfg.problems.benchmark), cfg.problems.path, int(cfg.problems.seed), cfg.limit)
    check_not_held_out(problems, cfg.evaluate.get("benchmark_root"))
    out = Path(str(cfg.out)).expanduser()
    settings = json.loads(json.dumps(sampling_settings(cfg, problems, generation), default=str))
    fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    store = SampleFile(samples_path(out), fingerprint, settings)
    done, previous_run = store.read()
    engine, tokenizer, description = load_engine(cfg)
    generator = engine if isinstance(engine, TextGenerator) else HFGenerator(engine, tokenizer)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    label = str(cfg.label or ("checkpoint" if cfg.checkpoint else "base"))
    tags = {
        "hipo.kind": "pairs",
        "hipo.method": label,
        "hipo.model": description,
        "hipo.problems": problems.benchmark,
        "hipo.seed": str(cfg.seed),
        "hipo.git_commit": git_commit(),
        **{str(k): str(v) for k, v in cfg.logger.tags.items()},
    }
    with tracked_run(
        tracking_uri=cfg.logger.tracking_uri,
        experiment_name=cfg.logger.experiment_name,
        run_name=cfg.logger.run_name or f"pairs-{label}",
        tags=tags,
        params=redact_secrets(resolved),
        artifact_location=cfg.logger.artifact_location,
        parent_run_id=cfg.logger.get("parent_run_id"),
        continue_run_id=previous_run,
    ) as run_id:
        store.start(run_id)
        samples, progress = sample_problems(
            generator, tokenizer, problems.items, problems.answer_format, generation, int(cfg.chunk_size), store, done
        )
        usable, segmentation = usable_samples(samples, segmenter, str(store.path))
        rows, selection = pair_rows(
            samples, usable, str(cfg.selection.mode), int(cfg.selection.max_pairs_per_problem), int(cfg.seed)
        )
        write_jsonl_atomically(out, rows)
        metrics = _metrics(samples, selection, segmentation, progress, int(cfg.num_samples))
        metrics["time/pairs_job_s"] = time.perf_counter() - started
        mlflow.log_metrics(metrics, run_id=run_id)
        mlflow.log_artifact(str(out), "pairs", run_id=run_id)
        table = format_pairs_table(metrics, int(cfg.num_samples))
        print(table)
        print(f"pairs: {len(rows)} written to {out} (samples: {store.path})")
        print(f"MLflow run id: {run_id}  (experiment {cfg.logger.experiment_name!r}, store {cfg.logger.tracking_uri})")
    return {"run_id": run_id, "metrics": metrics, "out": str(out), "samples": str(store.path)}
