"""`hipo train … evaluate.enabled=true`: every benchmark file is checked in phase 1, before any model or run.

An empty file, a file in another benchmark's schema and gold answers that are not in the benchmark's format each
end in a :class:`~hipo.errors.UserError` naming the file (and the lines), with no model loaded, no MLflow run, no
output folder and no prepared-data cache entry.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hipo.app import train as train_app
from hipo.config.compose import compose_config
from hipo.errors import UserError

BAD_FILES = {
    "empty": ("", r"file .*bench.jsonl is empty"),
    "math500 as gsm8k": (
        json.dumps({"problem": "Find x.", "answer": "\\frac{1}{2}"}) + "\n",
        r"bench.jsonl: no row has a gold answer in field 'answer' ending in '#### <number>'",
    ),
    "bad golds": (
        "".join(
            json.dumps({"question": "q", "answer": f"w\n#### {gold}"}) + "\n" for gold in ("3", "x^2", "4", "(1,2)")
        ),
        r"bench.jsonl: 2 of 4 gold answers are not numeric final answers .*lines 2, 4",
    ),
}


@pytest.fixture
def no_model_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading weights fails the test: bad input must be found first."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded before the benchmarks were checked")

    monkeypatch.setattr(train_app, "build_policy", refuse)


# each case composes and validates a full training config (~0.6 s): one stays in the fast tier
@pytest.mark.parametrize(
    "case", [c if c == "empty" else pytest.param(c, marks=pytest.mark.slow) for c in sorted(BAD_FILES)]
)
def test_bad_benchmark_files_stop_training_before_anything_starts(
    case: str, tmp_path: Path, isolated_data_cache: Path, no_model_load: None
) -> None:
    text, message = BAD_FILES[case]
    path = tmp_path / "bench.jsonl"
    path.write_text(text, encoding="utf-8")
    cfg = compose_config(
        [
            "model=tiny",
            "trainer.accelerator=cpu",
            "evaluate.enabled=true",
            "benchmark=[gsm8k]",
            f"benchmark.gsm8k.path={path}",
            f"logger.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
            f"output_dir={tmp_path / 'run'}",
        ]
    )
    with pytest.raises(UserError, match=message) as caught:
        train_app.train(cfg)
    assert str(path) in str(caught.value)
    assert not (tmp_path / "mlflow.db").exists()  # no store, hence no run
    assert not (tmp_path / "run").exists()
    data_cache = isolated_data_cache / "data"
    assert not data_cache.exists() or not any(data_cache.iterdir())
