"""Benchmark loaders on the shared test files, local copies, the hub path (datasets mocked), subsets, bad input."""

from __future__ import annotations

import json
import logging
import socket
import time
from pathlib import Path

import pytest

from hipo.errors import UserError
from hipo.eval import benchmark_sources
from hipo.eval.benchmarks import (
    BENCHMARKS,
    BenchmarkError,
    BenchmarkFileNotFound,
    BenchmarkSpec,
    BenchmarkUnavailable,
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
    assert data.skipped_lines == (2, 4) and data.answer_format == "numeric"


def test_minerva_gold_is_the_last_box_of_the_solution(tmp_path: Path) -> None:
    path = tmp_path / "minerva.jsonl"
    solution = "First \\boxed{1}, then the answer is \\boxed{\\frac{a}{\\sqrt{b}}} \\mathrm{~cm}."
    path.write_text(json.dumps({"problem": "p", "solution": solution, "idx": 7}) + "\n", encoding="utf-8")
    assert load_benchmark("minerva_math", path=path)[0].gold == "\\frac{a}{\\sqrt{b}}"


def test_hub_loading_goes_through_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    monkeypatch.delenv("HIPO_SHARED_DIR", raising=False)  # no local copy: the hub is the source
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(benchmark_sources, "hub_reachable", lambda: (True, "huggingface.co:443"))
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


def test_synthetic_easy_is_one_step_held_out_and_not_the_multi_step_set() -> None:
    from hipo.data.synthetic.problems import generate_problems, split_of

    items = load_benchmark("synthetic_easy", limit=50, seed=0)
    assert len(items) == 50 and all(split_of(item.question) == "test" for item in items)
    problems = {p.question: p for p in generate_problems(50, seed=0, split="test", level="one_step")}
    assert [item.question for item in items] == list(problems)
    assert all(len(problems[item.question].steps) == 1 and item.gold == str(problems[item.question].answer)
               for item in items)  # fmt: skip
    assert not {item.question for item in items} & {item.question for item in load_benchmark("synthetic", limit=50)}


def test_custom_spec_passes_through() -> None:
    spec = BenchmarkSpec("mine", None, question_fields=("q",))
    assert get_spec(spec) is spec


# ---- every file is checked as a whole, naming the file and the lines -----------------------------------------------


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_every_benchmark_has_an_answer_format_matching_its_golds() -> None:
    """numeric for bare-number golds (GSM8K, AIME, synthetic); expression for LaTeX (MATH, Minerva, Gaokao)."""
    formats = {name: spec.answer_format for name, spec in BENCHMARKS.items()}
    assert formats == {
        "gsm8k": "numeric",
        "aime24": "numeric",
        "synthetic": "numeric",
        "synthetic_easy": "numeric",
        "math500": "expression",
        "minerva_math": "expression",
        "gaokao2023en": "expression",
    }
    assert load_benchmark_data("synthetic", limit=20).answer_format == "numeric"  # its golds pass the numeric check


def test_empty_file_names_the_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(BenchmarkError, match=r"benchmark 'gsm8k': file .*empty.jsonl is empty") as caught:
        load_benchmark_data("gsm8k", path=empty)
    assert isinstance(caught.value, UserError) and "answer" in (caught.value.hint or "")


def test_a_file_in_another_schema_says_which_field_it_expects(tmp_path: Path) -> None:
    """MATH500's rows passed as GSM8K: no row has a '####' answer."""
    math_like = _write(tmp_path / "math.jsonl", [{"problem": f"p{i}", "answer": "\\frac{1}{2}"} for i in range(3)])
    with pytest.raises(BenchmarkError) as caught:
        load_benchmark_data("gsm8k", path=math_like)
    message = str(caught.value)
    assert str(math_like) in message and "no row has a gold answer" in message
    assert "field 'answer' ending in '#### <number>'" in message and "gsm8k's file" in message
    if shared_benchmark_path("math500") is not None:  # the real file too
        with pytest.raises(BenchmarkError, match=r"math500/test.jsonl: no row has a gold answer"):
            load_benchmark_data("gsm8k", path=shared_benchmark_path("math500"))


def test_golds_that_are_not_in_the_benchmark_format_are_listed_by_line(tmp_path: Path) -> None:
    rows = [{"problem": f"p{i}", "answer": str(i)} for i in range(12)]
    for line in (2, 5, 6, 7, 8, 9, 11):  # 1-based lines with LaTeX golds in a numeric benchmark
        rows[line - 1]["answer"] = "\\frac{1}{2}"
    path = _write(tmp_path / "aime.jsonl", rows)
    with pytest.raises(BenchmarkError) as caught:
        load_benchmark_data("aime24", path=path)
    message = str(caught.value)
    assert str(path) in message and "7 of 12 gold answers are not numeric final answers" in message
    assert "lines 2, 5, 6, 7, 8 (+2 more)" in message and "is not a bare number" in message
    rows[0]["answer"] = "so x = 3\n#### 3"  # a worked solution where the final answer belongs
    with pytest.raises(BenchmarkError, match=r"line 1: .* holds a worked solution"):
        load_benchmark_data("math500", path=_write(path, rows))
    rows[0]["answer"] = "\\frac{1}{"
    with pytest.raises(BenchmarkError, match=r"1 of 12 gold answers .*line 1: .* unbalanced braces"):
        load_benchmark_data("math500", path=_write(path, rows))


def test_skipped_rows_are_reported_with_their_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = [{"question": f"q{i}", "answer": f"w\n#### {i}"} for i in range(10)]
    for line in (3, 4, 6, 7, 8, 10):
        rows[line - 1]["answer"] = "no final line"
    with caplog.at_level(logging.WARNING, logger="hipo.eval.benchmarks"):
        data = load_benchmark_data("gsm8k", path=_write(tmp_path / "gsm.jsonl", rows))
    assert data.skipped_lines == (3, 4, 6, 7, 8, 10) and len(data.items) == 4
    assert "skipped 6 of 10 rows without a gold answer" in caplog.text
    assert "gsm.jsonl: lines 3, 4, 6, 7, 8 (+1 more)" in caplog.text


# ---- local copies before the hub; an unreachable hub fails at once ---------------------------------------------------


def _no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the hub was asked although a local copy exists")

    monkeypatch.setattr(datasets, "load_dataset", refuse)


def test_shared_dir_and_root_copies_are_read_before_the_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_hub(monkeypatch)
    shared = tmp_path / "shared" / "data" / "benchmarks" / "gsm8k"
    shared.mkdir(parents=True)
    _write(shared / "test.jsonl", [{"question": "q", "answer": "#### 7", "idx": "shared-0"}])
    monkeypatch.setenv("HIPO_SHARED_DIR", str(tmp_path / "shared"))
    data = load_benchmark_data("gsm8k")
    assert data.source == str(shared / "test.jsonl") and [i.id for i in data.items] == ["shared-0"]
    root = tmp_path / "root" / "gsm8k"
    root.mkdir(parents=True)
    _write(root / "test.jsonl", [{"question": "q", "answer": "#### 8", "idx": "root-0"}])
    assert [i.id for i in load_benchmark("gsm8k", root=tmp_path / "root")] == ["root-0"]  # a root wins
    with pytest.raises(BenchmarkFileNotFound, match=r"math500/test.jsonl does not exist \(the benchmark root"):
        load_benchmark("math500", root=tmp_path / "root")  # a root without the file: no silent hub fallback
    assert load_benchmark("synthetic", limit=2, root=tmp_path / "root")  # generated when the root has no copy


def test_unreachable_hub_fails_fast_naming_the_local_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port nobody listens on: the probe is refused at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.delenv("HIPO_SHARED_DIR", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    _no_hub(monkeypatch)
    started = time.monotonic()
    with pytest.raises(BenchmarkUnavailable) as caught:
        load_benchmark("math500")
    assert time.monotonic() - started < benchmark_sources.HUB_PROBE_TIMEOUT_S + 1
    assert "no local copy" in str(caught.value) and f"127.0.0.1:{port}" in str(caught.value)
    hint = caught.value.hint or ""
    assert "HIPO_SHARED_DIR" in hint and "evaluate.benchmark_root" in hint and "benchmark.math500.path" in hint


def test_offline_mode_reads_the_datasets_cache_without_a_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    monkeypatch.delenv("HIPO_SHARED_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(benchmark_sources, "hub_reachable", lambda: pytest.fail("probed the hub in offline mode"))

    def not_cached(hub_id: str, config: str | None = None) -> None:
        raise ConnectionError("offline and not in the cache")

    monkeypatch.setattr(datasets, "load_dataset", not_cached)
    with pytest.raises(BenchmarkUnavailable, match="could not load hub dataset 'openai/gsm8k'") as caught:
        load_benchmark("gsm8k")
    assert "HIPO_SHARED_DIR" in (caught.value.hint or "")
