"""Benchmark loaders on the shared test files, the hub path (datasets mocked), subsets and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hipo.eval.benchmarks import (
    BenchmarkSpec,
    get_spec,
    load_benchmark,
    load_benchmark_data,
    shared_benchmark_path,
)
from hipo.eval.grading import is_equivalent

# name -> (rows in the file, rows without gold, {item id: gold} for a few known rows)
EXPECTED = {
    "gsm8k": (1319, 0, {"0": "18", "1": "3", "1318": "14"}),
    "math500": (500, 0, {"test/precalculus/807.json": "\\left( 3, \\frac{\\pi}{2} \\right)"}),
    "minerva_math": (272, 0, {"0": "1.6", "1": "4.5e33"}),
    "aime24": (30, 0, {"60": "204", "89": "902"}),
    "gaokao2023en": (385, 2, {"2023BJ_2023年新高考北京卷-数学/01Q.en": "$\\{x|-2\\leq x < 1\\}$"}),
}


def shared_file(name: str) -> Path:
    path = shared_benchmark_path(name)
    if path is None:
        pytest.skip(f"shared benchmark file for {name} not found (set HIPO_SHARED_DIR or provide ../shared)")
    return path


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shared_file_counts_and_gold(name: str) -> None:
    rows, skipped, known = EXPECTED[name]
    data = load_benchmark_data(name, path=shared_file(name))
    assert (data.n_rows, data.n_skipped, len(data.items)) == (rows, skipped, rows - skipped)
    by_id = {item.id: item for item in data.items}
    assert len(by_id) == len(data.items)  # ids are unique
    for item_id, gold in known.items():
        assert by_id[item_id].gold == gold
    assert all(item.question and item.gold for item in data.items)


def test_gaokao_rows_without_gold_are_the_two_with_empty_answers() -> None:
    path = shared_file("gaokao2023en")
    empty = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if '"answer": ""' in line]
    assert len(empty) == 2
    ids = {item.id for item in load_benchmark("gaokao2023en", path=path)}
    assert not {row["id"] for row in empty} & ids


@pytest.mark.parametrize(
    ("name", "field"), [("gsm8k", "answer"), ("math500", "solution"), ("minerva_math", "solution")]
)
def test_reference_solutions_grade_as_correct(name: str, field: str) -> None:
    """The grader accepts every reference solution against its own gold: extraction and gold parsing agree."""
    path = shared_file(name)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    items = load_benchmark(name, path=path)
    wrong = [item.id for row, item in zip(rows, items, strict=True) if not is_equivalent(row[field], item.gold)]
    assert wrong == []


def test_limit_takes_a_seeded_subset_in_file_order() -> None:
    path = shared_file("gsm8k")
    everything = [item.id for item in load_benchmark("gsm8k", path=path)]
    first = [item.id for item in load_benchmark("gsm8k", path=path, limit=20, seed=1)]
    assert first == [item.id for item in load_benchmark("gsm8k", path=path, limit=20, seed=1)]
    assert first != [item.id for item in load_benchmark("gsm8k", path=path, limit=20, seed=2)]
    assert len(first) == 20 and first == sorted(first, key=everything.index)
    assert len(load_benchmark("aime24", path=shared_file("aime24"), limit=100)) == 30


def test_unknown_name_and_missing_file_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown benchmark 'gsm9k'; known benchmarks: aime24, gaokao2023en, gsm8k"):
        load_benchmark("gsm9k")
    with pytest.raises(FileNotFoundError, match="benchmark 'math500': file .*nope.jsonl does not exist"):
        load_benchmark("math500", path=tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="limit must be positive"):
        load_benchmark("math500", path=tmp_path / "nope.jsonl", limit=0)


def test_bad_rows_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bench.jsonl"
    path.write_text('{"problem": "1+1?", "answer": "2"}\n\n{"problem": "2+2?", "answer": \n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bench.jsonl:3: invalid JSON"):
        load_benchmark("math500", path=path)
    path.write_text('{"problem": "1+1?", "answer": "2"}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bench.jsonl:2: expected a JSON object"):
        load_benchmark("math500", path=path)
    path.write_text('{"problem": "1+1?", "answer": "2"}\n{"text": "2+2?", "answer": "4"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bench.jsonl:2: no question.*'problem', 'question'"):
        load_benchmark("math500", path=path)


def test_rows_without_gold_are_counted_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "gsm.jsonl"
    rows = [
        {"question": "a?", "answer": "x = 1\n#### 1"},
        {"question": "b?", "answer": "no final line"},
        {"question": "c?", "answer": "#### 1,000"},
        {"question": "d?"},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    data = load_benchmark_data("gsm8k", path=path)
    assert [(item.id, item.gold) for item in data.items] == [("1", "1"), ("3", "1,000")]  # ids: 1-based rows
    assert (data.n_rows, data.n_skipped) == (4, 2)


def test_minerva_gold_is_the_last_box_of_the_solution(tmp_path: Path) -> None:
    path = tmp_path / "minerva.jsonl"
    solution = "First \\boxed{1}, then the answer is \\boxed{\\frac{a}{\\sqrt{b}}} \\mathrm{~cm}."
    path.write_text(json.dumps({"problem": "p", "solution": solution, "idx": 7}) + "\n", encoding="utf-8")
    assert load_benchmark("minerva_math", path=path)[0].gold == "\\frac{a}{\\sqrt{b}}"


def test_hub_loading_goes_through_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    calls = []

    def fake_load_dataset(hub_id: str, config: str | None = None) -> datasets.DatasetDict:
        calls.append((hub_id, config))
        rows = {"question": ["q1", "q2"], "answer": ["w #### 5", "w #### 6"]}
        return datasets.DatasetDict(
            {"train": datasets.Dataset.from_dict(rows), "test": datasets.Dataset.from_dict(rows)}
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    data = load_benchmark_data("gsm8k")
    assert calls == [("openai/gsm8k", "main")]
    assert [item.gold for item in data.items] == ["5", "6"] and data.source == "openai/gsm8k"

    def single_split(hub_id: str, config: str | None = None) -> datasets.DatasetDict:
        rows = {"question": ["q"], "answer": ["$7$"]}
        return datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows)})

    monkeypatch.setattr(datasets, "load_dataset", single_split)
    assert load_benchmark("gaokao2023en")[0].gold == "$7$"  # the only split is used when 'test' is absent

    def offline(hub_id: str, config: str | None = None) -> None:
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(RuntimeError, match="could not load hub dataset 'HuggingFaceH4/MATH-500'.*path="):
        load_benchmark("math500")


def test_synthetic_benchmark_is_held_out_and_seeded() -> None:
    from hipo.data.synthetic.problems import split_of

    items = load_benchmark("synthetic", limit=5, seed=3)
    assert len(items) == 5 and items == load_benchmark("synthetic", limit=5, seed=3)
    assert all(split_of(item.question) == "test" for item in items)
    assert all(item.gold.lstrip("-").isdigit() for item in items)


def test_custom_spec_passes_through() -> None:
    spec = BenchmarkSpec("mine", None, question_fields=("q",))
    assert get_spec(spec) is spec
