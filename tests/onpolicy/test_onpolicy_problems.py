"""Training problems for on-policy pairs: the generator's training split, or a file in a benchmark's schema, and the
refusal of every problem that is also in the held-out benchmark, by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hipo.data.synthetic.problems import generate_problems, split_of
from hipo.errors import ConfigError
from hipo.eval.benchmark_sources import BenchmarkUnavailable
from hipo.onpolicy.problems import HeldOutProblemError, check_not_held_out, load_training_problems


def _write(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_generated_problems_come_from_the_training_split_of_the_level() -> None:
    problems = load_training_problems("synthetic_easy", limit=40)
    assert len(problems.items) == 40 and problems.answer_format == "numeric"
    assert all(split_of(item.question) == "train" for item in problems.items)
    one_step = {p.question for p in generate_problems(40, seed=0, split="train", level="one_step")}
    assert {item.question for item in problems.items} == one_step
    check_not_held_out(problems)  # nothing held out in the training split


def test_a_file_in_the_synthetic_schema_with_test_split_problems_is_refused_by_id(tmp_path: Path) -> None:
    held_out = generate_problems(2, seed=3, split="test", level="one_step")
    train = generate_problems(3, seed=3, split="train", level="one_step")
    rows = [{"id": p.id, "question": p.question, "answer": p.answer} for p in [*train, *held_out]]
    problems = load_training_problems("synthetic_easy", path=str(_write(tmp_path / "p.jsonl", rows)))
    with pytest.raises(HeldOutProblemError) as error:
        check_not_held_out(problems)
    message = str(error.value)
    assert "2 of 5 problems" in message and all(p.id in message for p in held_out)
    assert not any(p.id in message for p in train)


def test_a_file_overlapping_the_held_out_test_set_is_refused_naming_both(tmp_path: Path) -> None:
    root = tmp_path / "benchmarks"
    _write(root / "gsm8k" / "test.jsonl", [{"question": "How many legs do 3 cats have?", "answer": "x #### 12"}])
    rows = [
        {"id": "ok-1", "question": "How many legs do 2 dogs have?", "answer": "#### 8"},
        {"id": "leak", "question": "  how many legs do 3 CATS have? ", "answer": "#### 12"},  # spacing and case
    ]
    problems = load_training_problems("gsm8k", path=str(_write(tmp_path / "train.jsonl", rows)))
    assert problems.answer_format == "numeric" and [i.gold for i in problems.items] == ["8", "12"]
    with pytest.raises(HeldOutProblemError) as error:
        check_not_held_out(problems, benchmark_root=str(root))
    assert "leak (= 1)" in str(error.value) and "ok-1" not in str(error.value) and "gsm8k test set" in str(error.value)


def test_the_check_cannot_be_skipped_when_the_held_out_set_is_unreadable(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HIPO_SHARED_DIR", raising=False)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty-cache"))
    rows = [{"question": "How many legs do 2 dogs have?", "answer": "#### 8"}]
    problems = load_training_problems("gsm8k", path=str(_write(tmp_path / "train.jsonl", rows)))
    with pytest.raises((BenchmarkUnavailable, FileNotFoundError)):
        check_not_held_out(problems, benchmark_root=str(tmp_path / "no-such-root"))


def test_a_benchmark_without_a_generator_needs_a_file() -> None:
    with pytest.raises(ConfigError, match="problems=jsonl"):
        load_training_problems("gsm8k")
    with pytest.raises(ConfigError, match="problems.benchmark"):
        load_training_problems("nope")
