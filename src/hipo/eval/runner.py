"""``evaluate``: the same prompts, generation and grading for every method; results to the active MLflow run.

All benchmarks are loaded (and their files checked) before any generation starts. Per benchmark: accuracy (the
mean correctness over all samples, i.e. pass@1), the count of samples with no extractable answer (``no_answer``:
never matched, never guessed), with ``n > 1`` samples also pass@k and maj@k, optional judge means per rubric
dimension with the count of failed judgments, and per-sample records (prompt, generation, extracted answer, gold,
verdict, judge scores). A judgment that fails is recorded, not raised: the caller decides (``hipo eval`` fails when
every judgment of a benchmark failed, see ``judge_failed_everywhere``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hipo.eval.benchmarks import BenchmarkData, BenchmarkSpec, load_benchmark_data
from hipo.eval.extraction import extract_final_answer
from hipo.eval.generation import GenerationConfig, HFGenerator, TextGenerator
from hipo.eval.grading import answers_match
from hipo.eval.judge import Judge, JudgeRequest, judge_means
from hipo.eval.prompts import render_prompt
from hipo.eval.sampling_metrics import k_values, majority_vote, pass_at_k

log = logging.getLogger(__name__)

PROMPT_TEMPLATE_ARTIFACT = "eval/prompt_template.txt"


@dataclass
class BenchmarkResult:
    """Scores and per-sample records of one benchmark.

    Attributes:
        name: benchmark name.
        accuracy: mean correctness over all items and samples.
        pass_at_k: unbiased pass@k for each reported k (only when n > 1).
        maj_at_k: majority-vote accuracy over the first k samples (only when n > 1).
        judge: mean judge score per rubric dimension (snake case) and ``verbosity``; {} without a judge.
        judge_failed: judgments that failed (recorded, not raised), out of ``judge_total``; ``judge_error``: the
            first failure's message.
        n_items: problems evaluated; n_skipped: rows skipped for lack of a gold answer.
        no_answer: samples (over all items and samples) from which no final answer could be extracted.
        n_samples: samples graded (items x samples per item).
        tokens_per_second: generation throughput.
        records: per-sample dicts (see ``evaluate``).
    """

    name: str
    accuracy: float
    n_items: int
    n_skipped: int
    tokens_per_second: float
    pass_at_k: dict[int, float] = field(default_factory=dict)
    maj_at_k: dict[int, float] = field(default_factory=dict)
    judge: dict[str, float] = field(default_factory=dict)
    judge_failed: int = 0
    judge_total: int = 0
    judge_error: str | None = None
    no_answer: int = 0
    n_samples: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def judge_failed_all(self) -> bool:
        """Whether a judge ran and every one of its judgments failed."""
        return self.judge_total > 0 and self.judge_failed == self.judge_total

    def metrics(self) -> dict[str, float]:
        """MLflow metrics under ``eval/<benchmark>/`` (naming contract)."""
        prefix = f"eval/{self.name}"
        out = {
            f"{prefix}/accuracy": self.accuracy,
            f"{prefix}/num_items": float(self.n_items),
            f"{prefix}/skipped_rows": float(self.n_skipped),
            f"{prefix}/no_answer": float(self.no_answer),
            f"{prefix}/tokens_per_second": self.tokens_per_second,
        }
        out.update({f"{prefix}/pass_at_{k}": value for k, value in self.pass_at_k.items()})
        out.update({f"{prefix}/maj_at_{k}": value for k, value in self.maj_at_k.items()})
        out.update({f"{prefix}/judge/{key}": value for key, value in self.judge.items()})
        if self.judge_total:
            out[f"{prefix}/judge_failed"] = float(self.judge_failed)
        return out


@dataclass
class EvaluationResult:
    """Results of every evaluated benchmark and the exact prompt template used."""

    benchmarks: dict[str, BenchmarkResult]
    prompt_template: str
    system_prompt: str | None = None

    def metrics(self) -> dict[str, float]:
        """All benchmarks' metrics in one dict."""
        return {key: value for result in self.benchmarks.values() for key, value in result.metrics().items()}


def _resolve(benchmarks: Sequence[str | BenchmarkSpec | BenchmarkData]) -> list[BenchmarkData]:
    """Loads names/specs (hub or generator) so that every error surfaces before generation."""
    loaded = [b if isinstance(b, BenchmarkData) else load_benchmark_data(b) for b in benchmarks]
    names = [b.name for b in loaded]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"benchmarks listed more than once: {duplicates}")
    empty = [f"{b.name} ({b.source})" for b in loaded if not b.items]
    if empty:
        raise ValueError(f"benchmarks with no gradable items: {', '.join(empty)}")
    return loaded


def grade_samples(samples: Sequence[str], gold: str, answer_format: str) -> tuple[list[str | None], list[bool]]:
    """(extracted final answer, correct) of each generation of one problem: the grader of every evaluation."""
    extracted = [extract_final_answer(text, answer_format) for text in samples]
    verdicts = [answer is not None and answers_match(answer, gold) for answer in extracted]
    return extracted, verdicts


def _score_benchmark(
    data: BenchmarkData, prompts: list[str], completions: list[list[str]], tokens_per_second: float
) -> BenchmarkResult:
    """Grades completions and computes accuracy, pass@k and maj@k; builds the records (without judge scores)."""
    n = len(completions[0]) if completions else 1
    records: list[dict[str, Any]] = []
    correct_counts: list[int] = []
    no_answer = 0
    maj_hits = {k: 0 for k in k_values(n)} if n > 1 else {}
    for item, prompt, samples in zip(data.items, prompts, completions, strict=True):
        extracted, verdicts = grade_samples(samples, item.gold, data.answer_format)
        correct_counts.append(sum(verdicts))
        no_answer += sum(answer is None for answer in extracted)
        for k in maj_hits:
            winner, _ = majority_vote(extracted[:k], answers_match)
            maj_hits[k] += int(winner is not None and answers_match(winner, item.gold))
        record: dict[str, Any] = {
            "id": item.id,
            "prompt": prompt,
            "generation": samples[0],
            "extracted": extracted[0],
            "gold": item.gold,
            "correct": verdicts[0],
            "no_answer": extracted[0] is None,
        }
        if n > 1:
            record["samples"] = [
                {"generation": g, "extracted": e, "correct": c}
                for g, e, c in zip(samples, extracted, verdicts, strict=True)
            ]
        records.append(record)
    items = len(data.items)
    result = BenchmarkResult(
        no_answer=no_answer,
        n_samples=items * n,
        name=data.name,
        accuracy=sum(correct_counts) / (items * n),
        n_items=items,
        n_skipped=data.n_skipped,
        tokens_per_second=tokens_per_second,
        records=records,
    )
    if n > 1:
        result.pass_at_k = {k: sum(pass_at_k(n, c, k) for c in correct_counts) / items for k in k_values(n)}
        result.maj_at_k = {k: hits / items for k, hits in maj_hits.items()}
    return result


def _judge_benchmark(judge: Judge, data: BenchmarkData, bench: BenchmarkResult) -> None:
    """Judges the first sample of each item: scores into the records, means and failure counts into ``bench``."""
    requests = [
        JudgeRequest(item.question, record["generation"], item.gold, verdict=record["correct"])
        for item, record in zip(data.items, bench.records, strict=True)
    ]
    judgments = judge.judge_many(requests)
    for record, judgment in zip(bench.records, judgments, strict=True):
        record["judge"] = judgment.as_record()
    bench.judge = judge_means(judgments)
    bench.judge_total = len(judgments)
    failed = [j for j in judgments if not j.ok]
    bench.judge_failed = len(failed)
    bench.judge_error = (failed[0].error or "unknown error") if failed else None
    if failed:
        log.error(
            "%s: the judge failed on %d of %d items (first error: %s)",
            data.name,
            len(failed),
            len(judgments),
            bench.judge_error,
        )


def judge_failed_everywhere(result: EvaluationResult) -> list[BenchmarkResult]:
    """The benchmarks on which a judge ran and every judgment failed (no judge scores at all)."""
    return [bench for bench in result.benchmarks.values() if bench.judge_failed_all]


def _log_to_mlflow(result: EvaluationResult, step: int | None) -> None:
    """Logs metrics, per-sample records and the prompt template into the active MLflow run (if any)."""
    import mlflow

    if mlflow.active_run() is None:
        log.warning("evaluate(log_to_mlflow=True) but no MLflow run is active: nothing logged")
        return
    mlflow.log_metrics(result.metrics(), step=step)
    mlflow.log_text(result.prompt_template, PROMPT_TEMPLATE_ARTIFACT)
    if result.system_prompt:
        mlflow.log_text(result.system_prompt, "eval/system_prompt.txt")
    for name, bench in result.benchmarks.items():
        mlflow.log_text(json.dumps(bench.records, indent=1, ensure_ascii=False), f"eval/{name}/samples.json")


def _evaluate_benchmark(
    generator: TextGenerator, tokenizer: Any, data: BenchmarkData, config: GenerationConfig, judge: Judge | None
) -> BenchmarkResult:
    """Renders the prompts of one benchmark, generates, grades and (with a judge) judges the completions."""
    prompts = [
        render_prompt(tokenizer, item.question, config.prompt_template, config.system_prompt) for item in data.items
    ]
    log.info("evaluating %s: %d items x %d samples", data.name, len(prompts), config.n)
    output = generator.generate_texts(prompts, config)
    bench = _score_benchmark(data, prompts, output.completions, output.tokens_per_second)
    if judge is not None:
        _judge_benchmark(judge, data, bench)
    log.info(
        "%s: accuracy %.4f (%d items, %d samples without an answer)",
        data.name,
        bench.accuracy,
        bench.n_items,
        bench.no_answer,
    )
    return bench


def _write_samples(results: dict[str, BenchmarkResult], samples_dir: Path) -> None:
    """Writes each benchmark's records to ``<samples_dir>/<benchmark>/samples.json``."""
    for name, bench in results.items():
        target = samples_dir / name / "samples.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(bench.records, indent=1, ensure_ascii=False), encoding="utf-8")


def evaluate(
    model: Any,
    tokenizer: Any,
    benchmarks: Sequence[str | BenchmarkSpec | BenchmarkData],
    generation_config: GenerationConfig | None = None,
    judge: Judge | None = None,
    log_to_mlflow: bool = True,
    step: int | None = None,
    samples_dir: str | Path | None = None,
) -> EvaluationResult:
    """Generates answers for each benchmark, grades them, optionally judges them, and logs the results.

    Args:
        model: a causal LM (``PreTrainedModel`` / ``PeftModel``) or any ``TextGenerator`` (e.g. ``VLLMGenerator``).
        tokenizer: the tokenizer whose chat template renders the prompts.
        benchmarks: loaded ``BenchmarkData`` (from ``load_benchmark_data`` with path/limit) or names/specs (loaded
            from the hub or generated, all before any generation).
        generation_config: decoding settings and the prompt template (default: greedy, 512 new tokens).
        judge: an optional rubric judge; it scores the first sample of each item.
        log_to_mlflow: log metrics ``eval/<benchmark>/…``, ``eval/<benchmark>/samples.json`` and
            ``eval/prompt_template.txt`` into the active MLflow run.
        step: the MLflow step of the metrics (e.g. the global training step).
        samples_dir: also write each benchmark's records to ``<samples_dir>/<benchmark>/samples.json``.

    Returns:
        An ``EvaluationResult``; records are dicts with ``id``, ``prompt``, ``generation``, ``extracted``, ``gold``,
        ``correct``, ``no_answer`` (first sample), ``samples`` (all samples, when n > 1) and ``judge`` (when judged).
    """
    config = generation_config or GenerationConfig()
    loaded = _resolve(benchmarks)
    if not getattr(tokenizer, "chat_template", None):
        log.warning("the tokenizer has no chat template: prompts are the plain filled template")
    generator = model if isinstance(model, TextGenerator) else HFGenerator(model, tokenizer)
    results = {data.name: _evaluate_benchmark(generator, tokenizer, data, config, judge) for data in loaded}
    result = EvaluationResult(results, config.prompt_template, config.system_prompt)
    if samples_dir is not None:
        _write_samples(results, Path(samples_dir))
    if log_to_mlflow:
        _log_to_mlflow(result, step)
    return result
