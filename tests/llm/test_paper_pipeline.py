"""`hipo pipeline`: the paper's whole pipeline offline, with a local OpenAI-compatible server doing the LLM work.

A Math-Stack-Exchange-format file (question / chosen / rejected) -> LLM decomposition (once, before training) ->
DPO and HiPO on the tiny model -> the five benchmarks -> the rubric judge -> `hipo report`. A planted API key is
sent to the server on every request and found in no file the pipeline wrote, nor in the MLflow store.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from hipo.cli import main
from hipo.data.synthetic.problems import generate_problems
from hipo.data.synthetic.responses import dispreferred_response, preferred_response
from hipo.eval.benchmarks import shared_benchmark_path
from hipo.eval.judge import DIMENSION_KEYS

BENCHMARKS = ("gsm8k", "math500", "minerva_math", "aime24", "gaokao2023en")
PLANTED = "sk-hipo-planted-4b1d9e27a0c3"
KEY_VARIABLE = "HIPO_PIPELINE_TEST_KEY"

# Stand-ins in each benchmark's own schema, for machines without the shared copies of the test sets.
STAND_INS: dict[str, list[dict[str, Any]]] = {
    "gsm8k": [{"question": f"What is {i} + {i}?", "answer": f"{i} + {i} = {2 * i}\n#### {2 * i}"} for i in (2, 3)],
    "math500": [{"problem": f"Compute ${i}^2$.", "answer": str(i * i), "unique_id": f"m{i}"} for i in (2, 3)],
    "minerva_math": [{"problem": f"Find ${i} \\cdot 3$.", "solution": f"It is $\\boxed{{{3 * i}}}$."} for i in (2, 3)],
    "aime24": [{"id": i, "problem": f"Find {i} times 7.", "answer": str(7 * i)} for i in (2, 3)],
    "gaokao2023en": [{"question": f"Solve $x - {i} = 0$.", "answer": f"${i}$"} for i in (2, 3)],
}


def _benchmark_root(tmp_path: Path) -> Path:
    """The shared test sets when all five are here, else stand-in files in the same layout and schemas."""
    paths = [shared_benchmark_path(name) for name in BENCHMARKS]
    if all(paths):
        return paths[0].parents[1]  # type: ignore[union-attr]
    root = tmp_path / "benchmarks"
    for name, rows in STAND_INS.items():
        (root / name).mkdir(parents=True)
        (root / name / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return root


def _mse_file(path: Path, n: int = 12) -> Path:
    """Rows in the Math Stack Exchange schema: raw (undecomposed) chosen and rejected answers."""
    rng = random.Random(0)
    with path.open("w") as handle:
        for problem in generate_problems(n, seed=3, split="train"):
            chosen = preferred_response(problem, boxed=False).parts().values()
            rejected = dispreferred_response(problem, rng.choice(("Rq", "Mt", "Ra")), False, rng).parts().values()
            row = {"question": problem.question, "chosen": "\n\n".join(chosen), "rejected": "\n\n".join(rejected)}
            handle.write(json.dumps(row) + "\n")
    return path


def _answer(body: dict[str, Any]) -> Any:
    """The fake model: decomposes an answer at its paragraphs, or scores a solution."""
    system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
    if system.startswith("You restructure"):
        original = user.split("## Original answer\n", 1)[1]
        parts = original.split("\n\n")
        return {"Rq": parts[0], "Mt": "\n\n".join(parts[1:-1]), "Ra": parts[-1]}
    return {"scores": dict.fromkeys(DIMENSION_KEYS, 6), "verbosity": 5, "comment": "ok"}


def _files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.slow
def test_pipeline_decomposes_trains_evaluates_judges_and_reports_without_writing_the_key(
    tmp_path: Path, fake_openai: Any, isolated_data_cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    fake_openai.default = lambda body: fake_openai.reply(_answer(body))
    monkeypatch.setenv(KEY_VARIABLE, PLANTED)
    monkeypatch.chdir(tmp_path)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client_settings = [
        f"{prefix}.client.{key}"
        for prefix in ("segmenter.decomposer", "evaluate.judge")
        for key in (f"base_url={fake_openai.url}", f"api_key_env={KEY_VARIABLE}", f"cache_dir={tmp_path / 'llm'}")
    ]
    main(
        [
            "pipeline",
            "experiment=pipeline_smoke",
            f"data.source.path={_mse_file(tmp_path / 'mse.jsonl')}",
            f"evaluate.benchmark_root={_benchmark_root(tmp_path)}",
            *client_settings,
            f"logger.tracking_uri={store}",
            f"logger.artifact_location={tmp_path / 'mlruns'}",
            f"hydra.run.dir={tmp_path / 'pipeline'}",
            f"hydra.sweep.dir={tmp_path / 'multirun'}",
        ]
    )
    out = capsys.readouterr().out

    decompositions = [b for b in fake_openai.requests if b["messages"][0]["content"].startswith("You restructure")]
    assert len(decompositions) == 2 * 12  # each answer once: before training, never again by the two jobs
    assert len(fake_openai.requests) > len(decompositions)  # the judge was asked too
    assert {h.get("Authorization") for h in fake_openai.headers} == {f"Bearer {PLANTED}"}

    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("pipeline_smoke").experiment_id])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert sorted(r.data.tags["hipo.method"] for r in children) == ["dpo", "hipo"]
    for run in children:
        assert run.info.status == "FINISHED"
        for name in BENCHMARKS:
            assert f"eval/{name}/accuracy" in run.data.metrics
            assert run.data.metrics[f"eval/{name}/judge/logical_flow"] == 6
    report = (tmp_path / "pipeline" / "report" / "report.md").read_text()
    assert re.search(r"\bhipo\b", report) and re.search(r"\bdpo\b", report)
    assert "hipo pipeline: done" in out

    assert _files_containing(tmp_path, PLANTED.encode()) == []
    assert _files_containing(isolated_data_cache, PLANTED.encode()) == []
