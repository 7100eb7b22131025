"""Row sources: JSONL (errors with file:line), the hub/local-file source, and the synthetic generator."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from hipo.data.data_stats import DataStats
from hipo.data.row_errors import DataError, RowLocation
from hipo.data.segmenters import FieldsSegmenter, RulesSegmenter, TagsSegmenter, segment_rows
from hipo.data.sources import HubSource, JsonlSource, SyntheticSource
from hipo.data.synthetic import generate_problems, split_of
from hipo.data.synthetic.problems import evaluate
from hipo.data.synthetic.responses import MT_ERROR_ANSWERS

# ---------------------------------------------------------------- jsonl


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_rows_carry_file_and_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "d.jsonl", ['{"question": "a"}', "", '{"question": "b"}'])
    rows = list(JsonlSource(path).rows())
    assert [(loc.row, row["question"]) for loc, row in rows] == [(1, "a"), (3, "b")]
    assert rows[0][0].source == str(path)


def test_jsonl_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "bad.jsonl", ['{"question": "a"}', '{"question": "b"}', '{"question": "c",'])
    with pytest.raises(DataError, match=rf"^{tmp_path}/bad.jsonl:3: malformed JSON"):
        list(JsonlSource(path).rows())


def test_jsonl_non_object_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "list.jsonl", ["[1, 2]"])
    with pytest.raises(DataError, match=r"list.jsonl:1: expected a JSON object, got list"):
        list(JsonlSource(path).rows())


def test_jsonl_missing_field_names_field_and_row(tmp_path: Path) -> None:
    good = {"prompt": "p", "chosen": "<Rq>a</Rq><Mt>b</Mt><Ra>c</Ra>", "rejected": "<Rq>a</Rq><Mt>x</Mt><Ra>c</Ra>"}
    bad = {"prompt": "p", "chosen": good["chosen"]}
    path = write_lines(tmp_path / "m.jsonl", [json.dumps(good), json.dumps(bad)])
    segmenter = TagsSegmenter(prompt_field="prompt")
    with pytest.raises(DataError, match=r"m.jsonl:2: field 'rejected': missing field"):
        list(segment_rows(JsonlSource(path).rows(), segmenter, DataStats()))


def test_jsonl_wrong_type_field(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "t.jsonl", [json.dumps({"prompt": "p", "chosen": 3, "rejected": "r"})])
    with pytest.raises(DataError, match=r"t.jsonl:1: field 'chosen': expected a string, got int"):
        list(segment_rows(JsonlSource(path).rows(), TagsSegmenter(prompt_field="prompt"), DataStats()))


# ---------------------------------------------------------------- math stack exchange schema via `datasets`


def _mse_rows() -> list[dict[str, str]]:
    return [
        {
            "question": f"Prove that {i} + 1 > {i}.",
            "chosen": f"We need to show {i} + 1 > {i}.\n\nAdding 1 increases a number.\n\nThus {i} + 1 > {i}.",
            "rejected": f"Let us see.\n\nIt is obvious.\n\nTherefore the answer is {i}.",
            **{f"{s}_{side}": f"{s} text {i}{side}" for s in ("Rq", "Mt", "Ra") for side in "ab"},
        }
        for i in range(5)
    ]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_hub_source_reads_a_local_file_through_datasets(tmp_path: Path, suffix: str) -> None:
    import pandas as pd

    path = tmp_path / f"mse{suffix}"
    frame = pd.DataFrame(_mse_rows())
    frame.to_json(path, orient="records", lines=True) if suffix == ".jsonl" else frame.to_parquet(path)
    source = HubSource(path=path, limit=4)
    rows = list(source.rows())
    assert [loc.row for loc, _ in rows] == [1, 2, 3, 4]
    assert rows[2][1]["question"] == "Prove that 2 + 1 > 2."
    fields = list(segment_rows(source.rows(), FieldsSegmenter(), DataStats()))
    assert fields[1].chosen.segment_text("Mt") == "Mt text 1a"
    ruled = list(segment_rows(source.rows(), RulesSegmenter(on_failure="error"), DataStats()))
    assert ruled[0].chosen.segment_text("Rq") == "We need to show 0 + 1 > 0."
    assert ruled[0].rejected.segment_text("Ra") == "Therefore the answer is 0."
    assert source.fingerprint() == HubSource(path=path, limit=4).fingerprint() != HubSource(path=path).fingerprint()


# ---------------------------------------------------------------- synthetic


def test_generate_problems_is_deterministic_and_correct() -> None:
    a, b = generate_problems(50, seed=3, split="train"), generate_problems(80, seed=3, split="train")
    assert a == b[:50]
    assert generate_problems(50, seed=4, split="train") != a
    for problem in a:
        assert 2 <= len(problem.steps) <= 4
        results = evaluate(problem.steps)
        assert results is not None and results[-1][2] == problem.answer
        for given in problem.givens:
            assert str(given.value) in problem.question


def test_one_step_level_is_deterministic_small_and_correct() -> None:
    problems = generate_problems(400, seed=0, split="train", level="one_step")
    assert problems[:50] == generate_problems(50, seed=0, split="train", level="one_step")
    assert {p.topic for p in problems} == {"gets_more", "gives_away", "boxes", "shares"}
    for problem in problems:
        (step,) = problem.steps
        assert isinstance(step.left, int) and isinstance(step.right, int) and max(step.left, step.right) <= 60
        results = evaluate(problem.steps)
        assert results is not None and results[0][2] == problem.answer >= 0
        assert str(step.left) in problem.question and str(step.right) in problem.question
    with pytest.raises(ValueError, match="level must be one of"):
        generate_problems(1, seed=0, level="hard")


def test_splits_are_disjoint() -> None:
    train = {p.question for p in generate_problems(2000, seed=0, split="train")}
    val = {p.question for p in generate_problems(300, seed=0, split="validation")}
    test = {p.question for p in generate_problems(300, seed=1, split="test")}
    assert not train & val and not train & test and not val & test
    assert all(split_of(q) == "validation" for q in val)


def last_number(text: str) -> int:
    return int(re.findall(r"\d+", text)[-1])


@pytest.mark.parametrize("mt_error_answer", MT_ERROR_ANSWERS)
def test_rejected_differs_only_in_the_error_segment(mt_error_answer: str) -> None:
    rows = [row for _, row in SyntheticSource(300, seed=5, mt_error_answer=mt_error_answer).rows()]
    counts = {"Rq": 0, "Mt": 0, "Ra": 0}
    for row in rows:
        error = row["error_segment"]
        counts[error] += 1
        differing = {s for s in ("Rq", "Mt", "Ra") if row[f"{s}_a"] != row[f"{s}_b"]}
        answer_changed = error == "Ra" or (error == "Mt" and mt_error_answer != "gold")
        assert differing == ({"Mt", "Ra"} if error == "Mt" and answer_changed else {error}), row
        stated = [last_number(row[f"Ra_{side}"]) for side in "ab"]
        assert stated[0] == row["answer"] == last_number(row["Mt_a"])
        if answer_changed:
            assert stated[1] != row["answer"]
        if error == "Mt" and mt_error_answer == "propagated":  # Ra repeats what its own slipped steps computed
            assert stated[1] == last_number(row["Mt_b"])
        if error == "Mt" and mt_error_answer == "contradicting":  # Ra contradicts its own last step
            assert stated[1] != last_number(row["Mt_b"])
    assert all(60 < n < 140 for n in counts.values()), counts  # uniform over 3 segments: 100 each expected


def test_an_unknown_mt_error_answer_is_refused() -> None:
    with pytest.raises(ValueError, match="mt_error_answer must be one of"):
        SyntheticSource(4, mt_error_answer="wrong")


def test_error_weights_select_the_segment() -> None:
    rows = [row for _, row in SyntheticSource(60, error_weights={"Mt": 1.0}).rows()]
    assert {row["error_segment"] for row in rows} == {"Mt"}


def test_synthetic_is_deterministic_and_fingerprinted() -> None:
    a, b = list(SyntheticSource(20, seed=1).rows()), list(SyntheticSource(20, seed=1).rows())
    assert a == b and a[0][0] == RowLocation("synthetic-train-1", 1)
    assert SyntheticSource(20, seed=1).fingerprint() != SyntheticSource(20, seed=2).fingerprint()


@pytest.mark.parametrize(
    ("fmt", "segmenter"), [("tags", TagsSegmenter()), ("headers", TagsSegmenter()), ("plain", RulesSegmenter())]
)
def test_rendered_variants_segment_like_the_fields(fmt: str, segmenter: TagsSegmenter | RulesSegmenter) -> None:
    """tags / headers / plain renderings, segmented by tags / rules, give exactly the pre-decomposed parts."""
    reference = list(segment_rows(SyntheticSource(200, seed=2).rows(), FieldsSegmenter(), DataStats()))
    segmenter.on_failure = "error"
    rendered = list(segment_rows(SyntheticSource(200, seed=2, format=fmt).rows(), segmenter, DataStats()))
    for ref, got in zip(reference, rendered, strict=True):
        assert got.meta["error_segment"] == ref.meta["error_segment"]
        for name in ("Rq", "Mt", "Ra"):
            assert got.chosen.segment_text(name) == ref.chosen.segment_text(name)
            assert got.rejected.segment_text(name) == ref.rejected.segment_text(name)


def test_synthetic_responses_are_short(smollm2_tokenizer: object) -> None:
    pairs = list(segment_rows(SyntheticSource(100).rows(), FieldsSegmenter(), DataStats()))
    lengths = [len(smollm2_tokenizer(p.chosen.text)["input_ids"]) for p in pairs]  # type: ignore[operator]
    assert 40 <= min(lengths) and max(lengths) <= 140 and 60 <= sum(lengths) / len(lengths) <= 120
