"""The samples file: chunks appended whole, a cut-off last line dropped, other settings refused; chunk seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hipo.errors import ConfigError
from hipo.onpolicy.samples import ProblemSamples, SampleFile, chunk_seed, chunks_of


def _record(pid: str) -> ProblemSamples:
    return ProblemSamples(pid, "q", "1", "p", ["a", "b"], ["1", None], [True, False], [2, 3], 0)


def test_records_round_trip_and_the_run_id_is_kept(tmp_path: Path) -> None:
    store = SampleFile(tmp_path / "s.jsonl", "fp", {"k": 1})
    assert store.read() == ({}, None)
    store.start("run-1")
    store.append([_record("a"), _record("b")])
    store.start("run-2")  # resuming keeps the header
    done, run_id = SampleFile(tmp_path / "s.jsonl", "fp", {"k": 1}).read()
    assert run_id == "run-1" and list(done) == ["a", "b"] and done["a"] == _record("a")


def test_a_last_line_cut_by_a_crash_is_dropped(tmp_path: Path) -> None:
    store = SampleFile(tmp_path / "s.jsonl", "fp", {})
    store.start(None)
    store.append([_record("a")])
    with store.path.open("a") as handle:
        handle.write(json.dumps({"id": "b"})[:7])  # no newline: killed while writing
    done, _ = store.read()
    assert list(done) == ["a"] and store.path.read_text().endswith("\n")


def test_samples_of_other_settings_are_refused_naming_what_differs(tmp_path: Path) -> None:
    SampleFile(tmp_path / "s.jsonl", "fp-1", {"temperature": 0.8, "model": "m"}).start(None)
    with pytest.raises(ConfigError, match="differing: temperature"):
        SampleFile(tmp_path / "s.jsonl", "fp-2", {"temperature": 1.0, "model": "m"}).read()
    (tmp_path / "other.jsonl").write_text('{"rows": 1}\n')
    with pytest.raises(ConfigError, match="not a hipo pairs samples file"):
        SampleFile(tmp_path / "other.jsonl", "fp", {}).read()


def test_chunk_seeds_differ_across_chunks_and_seeds() -> None:
    seeds = {chunk_seed(s, c) for s in range(5) for c in range(5)}
    assert len(seeds) == 25 and chunk_seed(1, 2) == chunk_seed(1, 2)


def test_chunks_keep_the_order() -> None:
    assert [len(c) for c in chunks_of(list(range(7)), 3)] == [3, 3, 1]  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        chunks_of([], 0)
