"""``evaluate``: the tiny model on two benchmarks into an MLflow SQLite store; exact metrics with a scripted engine."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from hipo.app.eval_command import format_results
from hipo.eval.benchmarks import BenchmarkData, BenchmarkItem, load_benchmark_data, shared_benchmark_path
from hipo.eval.generation import GenerationConfig, GenerationOutput
from hipo.eval.judge import DIMENSION_KEYS, Judge, JudgeRequest, Judgment
from hipo.eval.runner import evaluate
from hipo.models.tiny import build_tiny_model

RECORD_KEYS = {"id", "prompt", "generation", "extracted", "gold", "correct", "no_answer"}


@pytest.fixture
def tracking(tmp_path: Path, mlflow_uri: str) -> Iterator[str]:
    """A fresh SQLite MLflow store (``mlflow_uri``: a copy of the migrated template, in tmp_path) with an experiment
    whose artifacts live under tmp_path; restores the old URI."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(mlflow_uri)
    experiment = mlflow.create_experiment("eval-test", artifact_location=(tmp_path / "artifacts").as_uri())
    try:
        yield experiment
    finally:
        mlflow.set_tracking_uri(previous)


class ScriptedEngine:
    """A ``TextGenerator`` answering from a table {question substring: [completions]}; records its calls."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.calls = 0

    def generate_texts(self, prompts: Sequence[str], config: GenerationConfig) -> GenerationOutput:
        self.calls += 1
        completions = [next(v for k, v in self.table.items() if k in p)[: config.n] for p in prompts]
        return GenerationOutput(completions=completions, new_tokens=10 * len(prompts), seconds=2.0)


class ConstantJudge(Judge):
    """A judge without a server: 8 on every dimension, verbosity 4; fails on solutions containing 'FAIL' (or all)."""

    def __init__(self, fail_all: bool = False) -> None:
        self.seen: list[JudgeRequest] = []
        self.fail_all = fail_all

    def judge(self, request: JudgeRequest) -> Judgment:
        self.seen.append(request)
        if self.fail_all or "FAIL" in request.response:
            return Judgment(
                ok=False, error="APIConnectionError: Connection error." if self.fail_all else "scripted failure"
            )
        return Judgment(ok=True, scores=dict.fromkeys(DIMENSION_KEYS, 8), verbosity=4, comment="ok")

    def judge_many(self, requests: Sequence[JudgeRequest]) -> list[Judgment]:
        return [self.judge(request) for request in requests]


def toy_benchmark(name: str = "toy", answer_format: str = "expression") -> BenchmarkData:
    items = [
        BenchmarkItem("a", "Question A: 1+1?", "2"),
        BenchmarkItem("b", "Question B: half of 1?", "\\frac{1}{2}"),
        BenchmarkItem("c", "Question C: 3*3?", "9"),
    ]
    return BenchmarkData(
        name=name, items=items, source="inline", n_rows=4, n_skipped=1, answer_format=answer_format, skipped_lines=(4,)
    )


@pytest.mark.slow  # generates with the tiny model
def test_tiny_model_on_two_benchmarks_logs_metrics_and_samples(
    tmp_path: Path, tracking: str, smollm2_tokenizer
) -> None:
    paths = {name: shared_benchmark_path(name) for name in ("gsm8k", "math500")}
    if None in paths.values():
        pytest.skip("shared benchmark files not found (set HIPO_SHARED_DIR or provide ../shared)")
    benchmarks = [load_benchmark_data(name, path=path, limit=3, seed=0) for name, path in paths.items()]
    config = GenerationConfig(max_new_tokens=6, batch_size=3, progress=False)
    with mlflow.start_run(experiment_id=tracking) as run:
        result = evaluate(build_tiny_model(), smollm2_tokenizer, benchmarks, config, step=0)
    client = MlflowClient()
    metrics = client.get_run(run.info.run_id).data.metrics
    for name in ("gsm8k", "math500"):
        bench = result.benchmarks[name]
        assert len(bench.records) == 3
        # The logged accuracy is the mean of the per-sample verdicts in the logged table.
        assert metrics[f"eval/{name}/accuracy"] == pytest.approx(sum(r["correct"] for r in bench.records) / 3)
        assert metrics[f"eval/{name}/num_items"] == 3
        samples = json.loads(
            Path(client.download_artifacts(run.info.run_id, f"eval/{name}/samples.json", tmp_path)).read_text()
        )
        assert [s["id"] for s in samples] == [item.id for item in benchmarks[0 if name == "gsm8k" else 1].items]
        assert all(RECORD_KEYS <= set(s) for s in samples)
        assert all(s["prompt"].startswith("<|im_start|>") for s in samples)
    template = Path(client.download_artifacts(run.info.run_id, "eval/prompt_template.txt", tmp_path)).read_text()
    assert template == config.prompt_template


def test_accuracy_pass_and_maj_at_k_are_exact() -> None:
    """n=4 samples per item, verdicts by hand:

    A (gold 2):   [2, 3, 3, 2]        -> c=2; maj@2: tie, the first group (2) wins: correct; maj@4: tie 2 vs 3 -> 2
    B (gold 1/2): [0.5, 1, 1, 1]      -> c=1; maj@2: tie -> 0.5 correct; maj@4: "1" x3 wins -> wrong
    C (gold 9):   [none, 8, 8, 8]     -> c=0; all wrong
    accuracy = (2 + 1 + 0) / 12 = 0.25
    pass@1 = mean(c/4) = 0.25; pass@2 = mean(1 - C(4-c,2)/C(4,2)) = (1 - 1/6 + 1 - 3/6 + 0) / 3 = (5/6 + 1/2) / 3
    pass@4 = (1 + 1 + 0) / 3; maj@1 = first sample correct = (1 + 1 + 0) / 3; maj@2 = 2/3; maj@4 = 1/3
    """
    engine = ScriptedEngine(
        {
            "Question A": ["\\boxed{2}", "\\boxed{3}", "\\boxed{3}", "\\boxed{2}"],
            "Question B": ["\\boxed{0.5}", "\\boxed{1}", "\\boxed{1}", "\\boxed{1}"],
            "Question C": ["no answer", "\\boxed{8}", "\\boxed{8}", "\\boxed{8}"],
        }
    )
    config = GenerationConfig(do_sample=True, n=4, progress=False)
    result = evaluate(engine, _NoTemplateTokenizer(), [toy_benchmark()], config, log_to_mlflow=False)
    bench = result.benchmarks["toy"]
    assert bench.accuracy == pytest.approx(0.25)
    assert bench.pass_at_k == pytest.approx({1: 0.25, 2: (5 / 6 + 1 / 2) / 3, 4: 2 / 3})
    assert bench.maj_at_k == pytest.approx({1: 2 / 3, 2: 2 / 3, 4: 1 / 3})
    assert bench.records[2]["extracted"] is None and bench.records[2]["correct"] is False
    assert bench.records[2]["no_answer"] is True and bench.no_answer == 1 and bench.n_samples == 12
    assert result.metrics()["eval/toy/no_answer"] == 1
    assert [s["correct"] for s in bench.records[0]["samples"]] == [True, False, False, True]
    assert bench.tokens_per_second == pytest.approx(15.0)
    assert result.metrics()["eval/toy/pass_at_2"] == pytest.approx((5 / 6 + 1 / 2) / 3)
    assert result.metrics()["eval/toy/skipped_rows"] == 1


@pytest.mark.slow  # an MLflow store (its schema migrations, the first time)
def test_judge_scores_are_recorded_and_averaged(tracking: str) -> None:
    engine = ScriptedEngine({"Question A": ["\\boxed{2}"], "Question B": ["FAIL"], "Question C": ["\\boxed{9}"]})
    judge = ConstantJudge()
    with mlflow.start_run(experiment_id=tracking) as run:
        result = evaluate(
            engine, _NoTemplateTokenizer(), [toy_benchmark()], GenerationConfig(progress=False), judge=judge
        )
    bench = result.benchmarks["toy"]
    assert bench.judge_failed == 1
    assert bench.judge["final_answer_correctness"] == 8 and bench.judge["verbosity"] == 4
    assert bench.records[1]["judge"]["ok"] is False and bench.records[0]["judge"]["scores"]["logical_flow"] == 8
    assert [r.reference_answer for r in judge.seen] == ["2", "\\frac{1}{2}", "9"]
    metrics = MlflowClient().get_run(run.info.run_id).data.metrics
    assert metrics["eval/toy/judge/reasoning_validity"] == 8 and metrics["eval/toy/judge_failed"] == 1


def test_bad_benchmarks_fail_before_any_generation(tmp_path: Path) -> None:
    engine = ScriptedEngine({})
    with pytest.raises(ValueError, match="unknown benchmark"):
        evaluate(engine, _NoTemplateTokenizer(), [toy_benchmark(), "nonexistent"], log_to_mlflow=False)
    with pytest.raises(ValueError, match="more than once"):
        evaluate(engine, _NoTemplateTokenizer(), [toy_benchmark(), toy_benchmark()], log_to_mlflow=False)
    assert engine.calls == 0


def test_samples_dir_and_no_active_run(tmp_path: Path) -> None:
    """Without an active run nothing is logged (no error); the records still go to samples_dir."""
    assert mlflow.active_run() is None
    engine = ScriptedEngine({"Question": ["\\boxed{2}"]})
    result = evaluate(
        engine, _NoTemplateTokenizer(), [toy_benchmark()], GenerationConfig(progress=False), samples_dir=tmp_path
    )
    written = json.loads((tmp_path / "toy" / "samples.json").read_text())
    assert written == result.benchmarks["toy"].records
    assert [r["correct"] for r in written] == [True, False, False]


def test_no_answer_is_counted_and_never_guessed_for_latex_benchmarks() -> None:
    """The same generations on a LaTeX benchmark and a bare-number one: only the latter reads the last number."""
    table = {
        "Question A": ["so 1 + 1 makes 2 in total"],  # no stated answer
        "Question B": ["The answer is $S = \\frac{1}{2}$."],  # an equation: graded on its right-hand side
        "Question C": ["we are done in 9 steps, Step 3"],  # no stated answer
    }
    latex = evaluate(ScriptedEngine(table), _NoTemplateTokenizer(), [toy_benchmark()], log_to_mlflow=False)
    bench = latex.benchmarks["toy"]
    assert [r["extracted"] for r in bench.records] == [None, "S = \\frac{1}{2}", None]
    assert [r["correct"] for r in bench.records] == [False, True, False]
    assert [r["no_answer"] for r in bench.records] == [True, False, True] and bench.no_answer == 2
    assert latex.metrics()["eval/toy/no_answer"] == 2
    table_text = format_results(latex)
    assert "| no answer |" in table_text.splitlines()[0] and "| toy | 3 | 0.333 | 2/3 |" in table_text
    assert "1 rows skipped (no gold)" in table_text
    numeric = evaluate(
        ScriptedEngine(table), _NoTemplateTokenizer(), [toy_benchmark("n", "numeric")], log_to_mlflow=False
    )
    assert [r["extracted"] for r in numeric.benchmarks["n"].records] == ["2", "S = \\frac{1}{2}", "9"]
    assert numeric.benchmarks["n"].no_answer == 0 and numeric.benchmarks["n"].accuracy == 1.0


def test_a_judge_that_fails_everywhere_is_visible() -> None:
    engine = ScriptedEngine({"Question": ["\\boxed{2}"]})
    config = GenerationConfig(progress=False)
    failed = evaluate(
        engine,
        _NoTemplateTokenizer(),
        [toy_benchmark()],
        config,
        judge=ConstantJudge(fail_all=True),
        log_to_mlflow=False,
    )
    bench = failed.benchmarks["toy"]
    assert bench.judge_failed_all and (bench.judge_failed, bench.judge_total) == (3, 3) and bench.judge == {}
    assert bench.judge_error == "APIConnectionError: Connection error."
    assert failed.metrics()["eval/toy/judge_failed"] == 3
    assert "judge FAILED 3/3: APIConnectionError: Connection error." in format_results(failed)
    partial = evaluate(
        ScriptedEngine({"Question A": ["\\boxed{2}"], "Question B": ["FAIL"], "Question C": ["\\boxed{9}"]}),
        _NoTemplateTokenizer(),
        [toy_benchmark()],
        config,
        judge=ConstantJudge(),
        log_to_mlflow=False,
    )
    assert not partial.benchmarks["toy"].judge_failed_all
    assert "judge mean 8.00 (1/3 failed: scripted failure)" in format_results(partial)


class _NoTemplateTokenizer:
    """A tokenizer stand-in without a chat template (the prompt is the filled template)."""

    chat_template = None
