"""Evaluation: benchmarks, generation, grading, the rubric judge and the ``evaluate`` runner."""

from hipo.eval.benchmarks import (
    BENCHMARKS,
    BenchmarkData,
    BenchmarkItem,
    BenchmarkSpec,
    load_benchmark,
    load_benchmark_data,
    shared_benchmark_path,
)
from hipo.eval.generation import GenerationConfig, GenerationOutput, HFGenerator, TextGenerator, generate_completions
from hipo.eval.grading import answers_match, extract_answer, is_equivalent
from hipo.eval.judge import RUBRIC_DIMENSIONS, Judge, JudgeRequest, Judgment
from hipo.eval.prompts import DEFAULT_PROMPT_TEMPLATE, render_prompt
from hipo.eval.runner import BenchmarkResult, EvaluationResult, evaluate

__all__ = [
    "BENCHMARKS",
    "DEFAULT_PROMPT_TEMPLATE",
    "RUBRIC_DIMENSIONS",
    "BenchmarkData",
    "BenchmarkItem",
    "BenchmarkResult",
    "BenchmarkSpec",
    "EvaluationResult",
    "GenerationConfig",
    "GenerationOutput",
    "HFGenerator",
    "Judge",
    "JudgeRequest",
    "Judgment",
    "TextGenerator",
    "answers_match",
    "evaluate",
    "extract_answer",
    "generate_completions",
    "is_equivalent",
    "load_benchmark",
    "load_benchmark_data",
    "render_prompt",
    "shared_benchmark_path",
]
