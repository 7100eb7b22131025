"""`hipo eval` and the end-of-training evaluation: same benchmarks, prompts, decoding and grader for every method.

Every benchmark file is read and checked before any model loads or any MLflow run opens (bad input is a
:class:`~hipo.errors.UserError`: one line, exit code 2). A judge that failed on every item of a benchmark fails
`hipo eval` after the results are logged and the table printed (the run is marked FAILED), unless
``evaluate.judge.allow_failures=true``; partial failures are shown in the table with their count.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, cast

import mlflow
import torch
from omegaconf import DictConfig, OmegaConf

from hipo.app.builders import instantiate_component
from hipo.app.eval_model import load_engine
from hipo.config.components import import_target
from hipo.config.secrets import redact_secrets
from hipo.errors import ConfigError, UserError, config_errors, one_line
from hipo.eval.benchmarks import BenchmarkData, BenchmarkSpec, load_benchmark_data
from hipo.eval.generation import GenerationConfig
from hipo.eval.judge import Judge
from hipo.eval.runner import BenchmarkResult, EvaluationResult, evaluate, judge_failed_everywhere
from hipo.tracking.run import git_commit, tracked_run

log = logging.getLogger(__name__)


class JudgeFailed(UserError, RuntimeError):
    """The judge failed on every item of a benchmark and ``evaluate.judge.allow_failures`` is false."""


# ---- config -> evaluation objects -----------------------------------------------------------------------------------
def load_benchmarks(
    benchmark_nodes: DictConfig, limit: int | None = None, root: str | None = None
) -> list[BenchmarkData]:
    """Every selected benchmark, read and checked before any model is touched (see ``load_benchmark_data``).

    Args:
        benchmark_nodes: ``{name: {name, spec, path, root, limit, seed}}`` from ``benchmark=[...]``.
        limit: overrides each benchmark's own ``limit``.
        root: ``evaluate.benchmark_root``: a folder of local copies ``<root>/<name>/test.jsonl`` (a benchmark's own
            ``root`` wins); without any root, ``$HIPO_SHARED_DIR``'s copies are read before the hub.

    Raises:
        ConfigError: no benchmark selected, an unknown name (listing the known ones), a non-positive limit.
        BenchmarkError / BenchmarkFileNotFound / BenchmarkUnavailable: a file that is missing, empty, in another
            schema or with bad golds, or no local copy and no reachable hub (all :class:`~hipo.errors.UserError`).
    """
    with config_errors("benchmark"):
        if not benchmark_nodes:
            raise ValueError("no benchmark selected: pass e.g. benchmark=[gsm8k,math500] (see conf/benchmark/)")
        loaded = []
        for key, node in benchmark_nodes.items():
            loaded.append(
                load_benchmark_data(
                    benchmark_spec(node, where=f"benchmark.{key!s}")
                    if node.get("spec")
                    else str(node.get("name") or key),
                    path=node.get("path"),
                    limit=limit if limit is not None else node.get("limit"),
                    seed=int(node.get("seed", 0)),
                    root=node.get("root") or root,
                )
            )
    return loaded


def benchmark_spec(node: DictConfig, where: str) -> BenchmarkSpec:
    """The ``BenchmarkSpec`` a benchmark node names by import path (``spec: mypkg.benchmarks.MY_SPEC``).

    Raises:
        ConfigError: the path does not import, or names something other than a ``BenchmarkSpec``.
    """
    spec = import_target(str(node.spec), where=f"{where}.spec")
    if not isinstance(spec, BenchmarkSpec):
        raise ConfigError(
            f"{where}.spec={node.spec}: expected a hipo.eval.benchmarks.BenchmarkSpec, got {type(spec).__name__}"
        )
    return spec


def generation_config(settings: DictConfig) -> GenerationConfig:
    """``GenerationConfig`` from ``evaluate.generation`` (validated again by its ``__post_init__``)."""
    values = OmegaConf.to_container(settings, resolve=True)
    assert isinstance(values, dict)
    return GenerationConfig(**cast("dict[str, Any]", values))  # keys: the field names under evaluate.generation


def build_judge(judge_cfg: DictConfig) -> Judge | None:
    """The rubric judge when ``evaluate.judge.enabled`` (blind by default), else None."""
    if not judge_cfg.enabled:
        return None
    client = instantiate_component(judge_cfg.client)
    return Judge(
        client, concurrency=judge_cfg.concurrency, blind=judge_cfg.blind, include_reference=judge_cfg.include_reference
    )


def _judge_cell(bench: BenchmarkResult) -> str | None:
    """``judge mean 7.42``, ``judge mean 7.42 (3/16 failed: <error>)`` or ``judge FAILED 16/16: <error>``."""
    if not bench.judge_total:
        return None
    error = one_line(Exception(bench.judge_error or ""), limit=160).replace("|", "/")
    counts = f"{bench.judge_failed}/{bench.judge_total}"
    if bench.judge_failed_all:
        return f"judge FAILED {counts}: {error}"
    scores = [v for k, v in bench.judge.items() if k != "verbosity"]
    mean = f"judge mean {sum(scores) / len(scores):.2f}" if scores else "judge"
    return f"{mean} ({counts} failed: {error})" if bench.judge_failed else mean


def format_results(result: EvaluationResult) -> str:
    """A Markdown table: benchmark, items, accuracy, samples without an answer, extras (pass/maj@k, judge), tokens/s."""
    lines = ["| benchmark | items | accuracy | no answer | extra | tokens/s |", "|---|---:|---:|---:|---|---:|"]
    for name, bench in result.benchmarks.items():
        extra = [f"pass@{k} {v:.3f}" for k, v in bench.pass_at_k.items()]
        extra += [f"maj@{k} {v:.3f}" for k, v in bench.maj_at_k.items()]
        judge = _judge_cell(bench)
        if judge:
            extra.append(judge)
        if bench.n_skipped:
            extra.append(f"{bench.n_skipped} rows skipped (no gold)")
        no_answer = f"{bench.no_answer}/{bench.n_samples}" if bench.n_samples else str(bench.no_answer)
        lines.append(
            f"| {name} | {bench.n_items} | {bench.accuracy:.3f} | {no_answer} | {', '.join(extra) or '-'} | "
            f"{bench.tokens_per_second:.1f} |"
        )
    return "\n".join(lines)


def check_judge(result: EvaluationResult, judge_cfg: DictConfig) -> None:
    """Raises :class:`JudgeFailed` when every judgment of some benchmark failed, unless ``allow_failures``."""
    failed = judge_failed_everywhere(result)
    if not failed:
        return
    what = "; ".join(f"{b.name} {b.judge_failed}/{b.judge_total} ({b.judge_error})" for b in failed)
    if judge_cfg.get("allow_failures", False):
        log.warning("the judge failed on every item (allowed by evaluate.judge.allow_failures): %s", what)
        return
    raise JudgeFailed(
        f"the judge failed on every item: {what}; no judge scores were recorded",
        hint="check evaluate.judge.client (base_url, model, the API key variable), or pass "
        "evaluate.judge.allow_failures=true to accept results without judge scores",
    )


def run_evaluation(
    cfg: DictConfig, model: Any, tokenizer: Any, benchmarks: list[BenchmarkData], step: int | None = None
) -> EvaluationResult:
    """Generates with ``model`` (a transformers model or a ``TextGenerator`` such as vLLM), grades, judges, logs."""
    samples_dir = cfg.evaluate.samples_dir or str(Path(cfg.output_dir) / "eval")
    with torch.no_grad():
        return evaluate(
            model,
            tokenizer,
            benchmarks,
            generation_config=generation_config(cfg.evaluate.generation),
            judge=build_judge(cfg.evaluate.judge),
            log_to_mlflow=True,
            step=step,
            samples_dir=samples_dir,
        )


def evaluate_command(cfg: DictConfig) -> dict[str, Any]:
    """`hipo eval`: benchmarks are loaded first (bad names/files fail before any model or run), then one run."""
    started = time.perf_counter()
    limit = cfg.limit if cfg.limit is not None else cfg.evaluate.limit
    benchmarks = load_benchmarks(cfg.benchmark, limit, root=cfg.evaluate.get("benchmark_root"))
    model, tokenizer, description = load_engine(cfg)
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    method = str(cfg.label or ("checkpoint" if cfg.checkpoint else "base"))
    tags = {
        "hipo.kind": "eval",
        "hipo.method": method,
        "hipo.model": description,
        "hipo.benchmarks": ",".join(b.name for b in benchmarks),
        "hipo.seed": str(cfg.seed),
        "hipo.git_commit": git_commit(),
        **{str(k): str(v) for k, v in cfg.logger.tags.items()},
    }
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    resolved = redact_secrets(resolved)
    with tracked_run(
        tracking_uri=cfg.logger.tracking_uri,
        experiment_name=cfg.logger.experiment_name,
        run_name=cfg.logger.run_name or f"eval-{method}",
        tags=tags,
        params=resolved,
        artifact_location=cfg.logger.artifact_location,
    ) as run_id:
        with mlflow.start_run(run_id=run_id):
            mlflow.log_dict(resolved, "config/resolved.yaml")
            result = run_evaluation(cfg, model, tokenizer, benchmarks)
            mlflow.log_metric("time/eval_job_s", time.perf_counter() - started)
        table = format_results(result)
        print(table)
        print(f"MLflow run id: {run_id}  (experiment {cfg.logger.experiment_name!r}, store {cfg.logger.tracking_uri})")
        check_judge(result, cfg.evaluate.judge)  # after the table: the run is marked FAILED, the results stay
    return {"run_id": run_id, "metrics": result.metrics()}


def evaluate_after_training(
    cfg: DictConfig, policy: Any, tokenizer: Any, run_id: str, benchmarks: list[BenchmarkData], step: int
) -> EvaluationResult:
    """Evaluates the trained policy into the training run (``evaluate.enabled=true`` with ``benchmark=[...]``)."""
    policy.eval()
    with mlflow.start_run(run_id=run_id):
        result = run_evaluation(cfg, policy, tokenizer, benchmarks, step=step)
    print(format_results(result))
    for bench in judge_failed_everywhere(result):  # the trained model is saved: reported, not fatal
        log.error("%s: the judge failed on every item (%s); no judge scores", bench.name, bench.judge_error)
    return result
