"""Benchmarks: one small spec per benchmark and one loader for the hub, local JSONL files and the synthetic set.

A spec names where the data lives (hub id, config, split), which fields hold the question and the id, and how the
gold answer is read from a row. ``load_benchmark_data`` reads every row, skips (and counts) rows without a gold
answer, then takes a seeded subset when ``limit`` is smaller than what is left.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hipo.eval.extraction import last_boxed

log = logging.getLogger(__name__)

GoldFn = Callable[[Mapping[str, Any]], "str | None"]
RowFactory = Callable[[int, int], Iterable[Mapping[str, Any]]]

SYNTHETIC_DEFAULT_SIZE = 200


@dataclass(frozen=True)
class BenchmarkItem:
    """One evaluation problem: a stable id, the question text and the gold final answer."""

    id: str
    question: str
    gold: str


@dataclass(frozen=True)
class BenchmarkData:
    """A loaded benchmark: its items and where they came from.

    Attributes:
        name: the benchmark's name (used in metric names, ``eval/<name>/accuracy``).
        items: the problems kept (after skipping rows without gold and taking the ``limit`` subset).
        source: the file path or hub id read.
        n_rows: rows read from the source.
        n_skipped: rows skipped because they have no gold answer.
    """

    name: str
    items: list[BenchmarkItem]
    source: str
    n_rows: int
    n_skipped: int


def _text(value: Any) -> str | None:
    """A non-empty stripped string from a str/int/float field value, else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def gsm8k_gold(row: Mapping[str, Any]) -> str | None:
    """GSM8K: the text after the last ``####`` of the ``answer`` field (``"... #### 18"`` -> ``"18"``)."""
    answer = _text(row.get("answer"))
    if answer is None or "####" not in answer:
        return None
    return _text(answer.rsplit("####", 1)[1])


def answer_or_boxed_gold(row: Mapping[str, Any]) -> str | None:
    """The ``answer`` field when present (MATH500, AIME), else the last ``\\boxed{}`` of ``solution`` (Minerva)."""
    answer = _text(row.get("answer"))
    if answer is not None:
        return answer
    solution = _text(row.get("solution"))
    return _text(last_boxed(solution)) if solution else None


def gaokao_gold(row: Mapping[str, Any]) -> str | None:
    """Gaokao2023en: ``answer`` (often ``$…$``-wrapped LaTeX); empty answers (2 rows) count as missing gold."""
    answer = _text(row.get("answer"))
    if answer is None:
        return None
    if answer.endswith("solution:"):  # one row carries a stray "solution:" after its answer
        answer = answer[: -len("solution:")].strip()
    return answer or None


def _synthetic_rows(n: int, seed: int) -> Iterable[Mapping[str, Any]]:
    """Held-out synthetic problems as benchmark rows: the generator's ``test`` split, disjoint from training data."""
    from hipo.data.synthetic.problems import generate_problems

    for problem in generate_problems(n, seed=seed, split="test"):
        yield {"id": problem.id, "question": problem.question, "answer": problem.answer}


@dataclass(frozen=True)
class BenchmarkSpec:
    """Where one benchmark lives and how its rows map to ``BenchmarkItem``.

    Attributes:
        name: short name used in metrics and on the command line.
        hub_id: Hugging Face dataset id, or None for generated benchmarks.
        hub_config: dataset config name (``"main"`` for GSM8K), or None.
        split: split to evaluate; if the hub dataset has a single split under another name, that one is used.
        question_fields: candidate question fields, the first non-empty one wins.
        id_fields: candidate id fields, the first present one wins (else the 1-based row number).
        gold: reads the gold answer from a row; None means "no gold" (the row is counted and skipped).
        row_factory: generates rows ``(n, seed)`` instead of reading files (the synthetic benchmark).
    """

    name: str
    hub_id: str | None
    hub_config: str | None = None
    split: str = "test"
    question_fields: tuple[str, ...] = ("question", "problem")
    id_fields: tuple[str, ...] = ("id", "idx", "unique_id")
    gold: GoldFn = field(default=answer_or_boxed_gold)
    row_factory: RowFactory | None = None


BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in (
        BenchmarkSpec("gsm8k", "openai/gsm8k", "main", gold=gsm8k_gold),
        BenchmarkSpec("math500", "HuggingFaceH4/MATH-500", question_fields=("problem", "question")),
        BenchmarkSpec("minerva_math", "math-ai/minervamath", question_fields=("problem", "question")),
        BenchmarkSpec("aime24", "math-ai/aime24", question_fields=("problem", "question")),
        BenchmarkSpec(
            "gaokao2023en", "MARIO-Math-Reasoning/Gaokao2023-Math-En", id_fields=("id", "source"), gold=gaokao_gold
        ),
        BenchmarkSpec("synthetic", None, row_factory=_synthetic_rows),
    )
}


def get_spec(name_or_spec: str | BenchmarkSpec) -> BenchmarkSpec:
    """The spec for a benchmark name (a spec passes through); unknown names raise ``ValueError`` listing the known."""
    if isinstance(name_or_spec, BenchmarkSpec):
        return name_or_spec
    if name_or_spec not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name_or_spec!r}; known benchmarks: {', '.join(sorted(BENCHMARKS))}")
    return BENCHMARKS[name_or_spec]


def shared_benchmark_path(name: str) -> Path | None:
    """The project's shared local copy ``<shared>/data/benchmarks/<name>/test.jsonl`` if it exists.

    ``<shared>`` is ``$HIPO_SHARED_DIR`` when set, else the ``shared`` folder next to the repository root.
    """
    repo_root = Path(__file__).resolve().parents[3]
    shared = Path(os.environ.get("HIPO_SHARED_DIR", repo_root.parent / "shared"))
    path = shared / "data" / "benchmarks" / name / "test.jsonl"
    return path if path.is_file() else None


def read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, row)`` for each non-blank line; bad JSON or a non-object row raises naming file and line."""
    rows: list[tuple[int, dict[str, Any]]] = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{line_number}: invalid JSON ({error.msg} at column {error.colno})") from error
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{line_number}: expected a JSON object, got {type(row).__name__}")
            rows.append((line_number, row))
    return rows


def _read_hub(spec: BenchmarkSpec) -> list[tuple[int, dict[str, Any]]]:
    """All rows of the spec's hub dataset split, through ``datasets.load_dataset``."""
    import datasets

    try:
        splits = datasets.load_dataset(spec.hub_id, spec.hub_config)
    except Exception as error:
        raise RuntimeError(
            f"benchmark {spec.name!r}: could not load hub dataset {spec.hub_id!r} (config {spec.hub_config!r}): "
            f"{error}. Pass a local JSONL file with path=… instead."
        ) from error
    if spec.split in splits:
        split = spec.split
    elif len(splits) == 1:
        split = next(iter(splits))
        log.info("benchmark %s: hub dataset has no split %r, using its only split %r", spec.name, spec.split, split)
    else:
        raise ValueError(
            f"benchmark {spec.name!r}: hub dataset {spec.hub_id!r} has no split {spec.split!r}: {list(splits)}"
        )
    return [(index + 1, dict(row)) for index, row in enumerate(splits[split])]


def _to_item(spec: BenchmarkSpec, row: Mapping[str, Any], where: str, row_number: int) -> BenchmarkItem | None:
    """The item of one row; None when the row has no gold answer; raises when it has no question."""
    question = next((q for q in (_text(row.get(f)) for f in spec.question_fields) if q is not None), None)
    if question is None:
        raise ValueError(f"{where}: no question: none of the fields {list(spec.question_fields)} holds text")
    gold = spec.gold(row)
    if gold is None:
        return None
    raw_id = next((row[f] for f in spec.id_fields if f in row and row[f] is not None), row_number)
    return BenchmarkItem(id=str(raw_id), question=question, gold=gold)


def load_benchmark_data(
    name_or_spec: str | BenchmarkSpec, path: str | Path | None = None, limit: int | None = None, seed: int = 0
) -> BenchmarkData:
    """Loads a benchmark from a local JSONL ``path``, from its generator, or from the hub.

    Args:
        name_or_spec: a name in ``BENCHMARKS`` or a ``BenchmarkSpec``.
        path: a local JSONL file in the benchmark's schema; None reads the hub (or generates, for ``synthetic``).
        limit: keep at most this many items: a subset drawn with ``seed``, kept in file order.
        seed: seed of the subset (and of the synthetic generator).

    Raises:
        ValueError: unknown name, bad JSON, a row without a question, a non-positive limit.
        FileNotFoundError: ``path`` does not exist.
    """
    spec = get_spec(name_or_spec)
    if limit is not None and limit <= 0:
        raise ValueError(f"benchmark {spec.name!r}: limit must be positive, got {limit}")
    if path is not None:
        file = Path(path).expanduser()
        if not file.is_file():
            raise FileNotFoundError(f"benchmark {spec.name!r}: file {file} does not exist")
        rows, source = read_jsonl(file), str(file)
        location = f"{file}:"
    elif spec.row_factory is not None:
        n = limit if limit is not None else SYNTHETIC_DEFAULT_SIZE
        rows = [(index + 1, dict(row)) for index, row in enumerate(spec.row_factory(n, seed))]
        source, location = f"generated:{spec.name}", f"{spec.name} row "
    elif spec.hub_id is not None:
        rows, source = _read_hub(spec), spec.hub_id
        location = f"{spec.hub_id} row "
    else:
        raise ValueError(f"benchmark {spec.name!r} has neither a hub id nor a generator: pass path=…")
    items: list[BenchmarkItem] = []
    seen_ids: set[str] = set()
    for row_number, row in rows:
        item = _to_item(spec, row, f"{location}{row_number}", row_number)
        if item is None:
            continue
        if item.id in seen_ids:  # keep ids unique so per-sample records can be joined across runs
            item = BenchmarkItem(id=f"{item.id}#{row_number}", question=item.question, gold=item.gold)
        seen_ids.add(item.id)
        items.append(item)
    skipped = len(rows) - len(items)
    if skipped:
        log.warning(
            "benchmark %s: skipped %d of %d rows without a gold answer (%s)", spec.name, skipped, len(rows), source
        )
    if limit is not None and limit < len(items):
        keep = sorted(random.Random(seed).sample(range(len(items)), limit))
        items = [items[index] for index in keep]
    return BenchmarkData(name=spec.name, items=items, source=source, n_rows=len(rows), n_skipped=skipped)


def load_benchmark(
    name_or_spec: str | BenchmarkSpec, path: str | Path | None = None, limit: int | None = None, seed: int = 0
) -> list[BenchmarkItem]:
    """The items of a benchmark (see ``load_benchmark_data`` for the arguments and errors)."""
    return load_benchmark_data(name_or_spec, path=path, limit=limit, seed=seed).items
