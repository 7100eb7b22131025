"""Benchmarks: one small spec per benchmark and one loader for local JSONL files, the hub and the synthetic set.

A spec names where the data lives (hub id, config, split), which fields hold the question and the id, how the
gold answer is read from a row and its answer format (``numeric``: bare numbers, graded with the last-number
fallback; ``expression``: LaTeX, never guessed). ``load_benchmark_data`` reads every row and checks the file as a
whole before anything else runs:

* an empty file, or one in which no row has a gold answer in the benchmark's format (e.g. MATH500's file passed as
  GSM8K), raises ``BenchmarkError`` naming the file and the expected field and format;
* gold answers that cannot be graded in the benchmark's format raise, with their line numbers;
* rows without a gold answer are skipped and reported with their line numbers (the first few and the count);

then it takes a seeded subset when ``limit`` is smaller than what is left. Where rows come from (a ``path``, a
local copy under a root or ``$HIPO_SHARED_DIR``, the generator, the hub) is in ``hipo.eval.benchmark_sources``.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hipo.eval.benchmark_sources import (
    BenchmarkError,
    BenchmarkFileNotFound,
    BenchmarkUnavailable,
    read_hub,
    read_jsonl,
    root_copy,
    shared_copy,
)
from hipo.eval.extraction import check_answer_format, last_boxed
from hipo.eval.grading import gold_problem

__all__ = [
    "BENCHMARKS",
    "BenchmarkData",
    "BenchmarkError",
    "BenchmarkFileNotFound",
    "BenchmarkItem",
    "BenchmarkSpec",
    "BenchmarkUnavailable",
    "get_spec",
    "load_benchmark",
    "load_benchmark_data",
    "read_jsonl",
    "shared_benchmark_path",
]

log = logging.getLogger(__name__)

GoldFn = Callable[[Mapping[str, Any]], "str | None"]
RowFactory = Callable[[int, int], Iterable[Mapping[str, Any]]]
Rows = list[tuple[int, dict[str, Any]]]

SYNTHETIC_DEFAULT_SIZE = 200
SHOWN_LINES = 5  # line numbers listed in a message before "(+N more)"


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
        answer_format: ``numeric`` or ``expression`` (how generations are read, see ``extract_final_answer``).
        skipped_lines: line numbers (row numbers for the hub) of the skipped rows.
    """

    name: str
    items: list[BenchmarkItem]
    source: str
    n_rows: int
    n_skipped: int
    answer_format: str = "expression"
    skipped_lines: tuple[int, ...] = ()


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


def _synthetic_rows(n: int, seed: int, level: str = "multi_step") -> Iterable[Mapping[str, Any]]:
    """Held-out synthetic problems as benchmark rows: the generator's ``test`` split, disjoint from training data."""
    from hipo.data.synthetic.problems import generate_problems

    for problem in generate_problems(n, seed=seed, split="test", level=level):
        yield {"id": problem.id, "question": problem.question, "answer": problem.answer}


def _synthetic_easy_rows(n: int, seed: int) -> Iterable[Mapping[str, Any]]:
    """One-step synthetic problems (numbers up to 20): a level the embedded default model partly solves."""
    return _synthetic_rows(n, seed, level="one_step")


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
        answer_format: ``numeric`` (bare-number golds: GSM8K, AIME) or ``expression`` (LaTeX: MATH, Minerva, Gaokao).
        gold_field: where the gold answer is, for messages (e.g. ``field 'answer' ending in '#### <number>'``).
    """

    name: str
    hub_id: str | None
    hub_config: str | None = None
    split: str = "test"
    question_fields: tuple[str, ...] = ("question", "problem")
    id_fields: tuple[str, ...] = ("id", "idx", "unique_id")
    gold: GoldFn = field(default=answer_or_boxed_gold)
    row_factory: RowFactory | None = None
    answer_format: str = "expression"
    gold_field: str = "field 'answer'"

    def __post_init__(self) -> None:
        check_answer_format(self.answer_format)


BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in (
        BenchmarkSpec(
            "gsm8k",
            "openai/gsm8k",
            "main",
            gold=gsm8k_gold,
            answer_format="numeric",
            gold_field="field 'answer' ending in '#### <number>'",
        ),
        BenchmarkSpec("math500", "HuggingFaceH4/MATH-500", question_fields=("problem", "question")),
        BenchmarkSpec(
            "minerva_math",
            "math-ai/minervamath",
            question_fields=("problem", "question"),
            gold_field="field 'answer', or the last \\boxed{} of field 'solution'",
        ),
        BenchmarkSpec("aime24", "math-ai/aime24", question_fields=("problem", "question"), answer_format="numeric"),
        BenchmarkSpec(
            "gaokao2023en", "MARIO-Math-Reasoning/Gaokao2023-Math-En", id_fields=("id", "source"), gold=gaokao_gold
        ),
        BenchmarkSpec("synthetic", None, row_factory=_synthetic_rows, answer_format="numeric"),  # integer golds
        BenchmarkSpec("synthetic_easy", None, row_factory=_synthetic_easy_rows, answer_format="numeric"),
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
    """The project's shared local copy ``<shared>/data/benchmarks/<name>/test.jsonl`` if it exists (for tests).

    ``<shared>`` is ``$HIPO_SHARED_DIR`` when set, else the ``shared`` folder next to the repository root. The
    commands read ``$HIPO_SHARED_DIR`` only (``hipo.eval.benchmark_sources.shared_copy``), never the guessed folder.
    """
    repo_root = Path(__file__).resolve().parents[3]
    shared = Path(os.environ.get("HIPO_SHARED_DIR", repo_root.parent / "shared"))
    path = shared / "data" / "benchmarks" / name / "test.jsonl"
    return path if path.is_file() else None


def _line_list(numbers: Sequence[int]) -> str:
    """``lines 3, 9, 14, 20, 31 (+12 more)``: the first few line numbers and how many others."""
    shown = ", ".join(str(n) for n in numbers[:SHOWN_LINES])
    more = f" (+{len(numbers) - SHOWN_LINES} more)" if len(numbers) > SHOWN_LINES else ""
    return f"line{'s' if len(numbers) > 1 else ''} {shown}{more}"


def _read_rows(
    spec: BenchmarkSpec, path: str | Path | None, root: str | Path | None, limit: int | None, seed: int
) -> tuple[Rows, str]:
    """The rows and their source: ``path``, ``<root>/<name>/test.jsonl``, the generator, a shared copy, the hub."""
    file: Path | None = None
    if path is not None:
        file = Path(path).expanduser()
        if not file.is_file():
            raise BenchmarkFileNotFound(f"benchmark {spec.name!r}: file {file} does not exist")
    elif root is not None and (root_copy(spec.name, root).is_file() or spec.row_factory is None):
        file = root_copy(spec.name, root)
        if not file.is_file():
            raise BenchmarkFileNotFound(
                f"benchmark {spec.name!r}: file {file} does not exist (the benchmark root is {root})",
                hint=f"put the test set at <root>/{spec.name}/test.jsonl or pass benchmark.{spec.name}.path=FILE",
            )
    elif spec.row_factory is not None:
        n = limit if limit is not None else SYNTHETIC_DEFAULT_SIZE
        return [(index + 1, dict(row)) for index, row in enumerate(spec.row_factory(n, seed))], f"generated:{spec.name}"
    else:
        file = shared_copy(spec.name)
    if file is not None:
        rows = read_jsonl(file)
        if not rows:
            raise BenchmarkError(
                f"benchmark {spec.name!r}: file {file} is empty (no rows)",
                hint=f"a JSONL file with one problem per line: a question ({', '.join(spec.question_fields)}) "
                f"and the gold answer ({spec.gold_field})",
            )
        return rows, str(file)
    if spec.hub_id is None:
        raise BenchmarkError(f"benchmark {spec.name!r} has neither a hub id nor a generator: pass path=…")
    return read_hub(spec.name, spec.hub_id, spec.hub_config, spec.split), spec.hub_id


def _question(spec: BenchmarkSpec, row: Mapping[str, Any], where: str) -> str:
    """The row's question; raises naming ``where`` and the candidate fields when none holds text."""
    question = next((q for q in (_text(row.get(f)) for f in spec.question_fields) if q is not None), None)
    if question is None:
        raise BenchmarkError(f"{where}: no question: none of the fields {list(spec.question_fields)} holds text")
    return question


def _check_golds(
    spec: BenchmarkSpec, source: str, n_items: int, missing: list[int], bad: list[tuple[int, str, str]]
) -> None:
    """Raises on a file whose golds cannot be graded; logs the rows skipped for a missing gold."""
    if n_items == 0 and not bad:
        raise BenchmarkError(
            f"benchmark {spec.name!r}: {source}: no row has a gold answer in {spec.gold_field}; "
            f"is this {spec.name}'s file?",
            hint=f"pass the {spec.name} test set, or the benchmark whose schema this file has",
        )
    if bad:
        line, gold, problem = bad[0]
        wrong_file = f"; is this {spec.name}'s file?" if 2 * len(bad) >= len(bad) + n_items else ""
        raise BenchmarkError(
            f"benchmark {spec.name!r}: {source}: {len(bad)} of {len(bad) + n_items} gold answers are not "
            f"{spec.answer_format} final answers ({spec.gold_field}): {_line_list([b[0] for b in bad])} "
            f"(line {line}: {gold[:80]!r} {problem}){wrong_file}",
            hint="fix or remove these rows: a gold answer is the final answer alone"
            + (" (a bare number for this benchmark)" if spec.answer_format == "numeric" else ""),
        )
    if missing:
        log.warning(
            "benchmark %s: skipped %d of %d rows without a gold answer (%s) in %s: %s",
            spec.name,
            len(missing),
            n_items + len(missing),
            spec.gold_field,
            source,
            _line_list(missing),
        )


def _items(spec: BenchmarkSpec, rows: Rows, source: str) -> tuple[list[BenchmarkItem], list[int]]:
    """Every row with a gold answer as an item (unique ids), and the line numbers of rows without one."""
    where = f"{source}:" if not source.startswith("generated:") and source != spec.hub_id else f"{source} row "
    items: list[BenchmarkItem] = []
    missing: list[int] = []
    bad: list[tuple[int, str, str]] = []
    seen_ids: set[str] = set()
    for row_number, row in rows:
        question = _question(spec, row, f"{where}{row_number}")
        gold = spec.gold(row)
        if gold is None:
            missing.append(row_number)
            continue
        problem = gold_problem(gold, spec.answer_format)
        if problem is not None:
            bad.append((row_number, gold, problem))
            continue
        item_id = str(next((row[f] for f in spec.id_fields if f in row and row[f] is not None), row_number))
        if item_id in seen_ids:  # keep ids unique so per-sample records can be joined across runs
            item_id = f"{item_id}#{row_number}"
        seen_ids.add(item_id)
        items.append(BenchmarkItem(id=item_id, question=question, gold=gold))
    _check_golds(spec, source, len(items), missing, bad)
    return items, missing


def load_benchmark_data(
    name_or_spec: str | BenchmarkSpec,
    path: str | Path | None = None,
    limit: int | None = None,
    seed: int = 0,
    root: str | Path | None = None,
) -> BenchmarkData:
    """Loads and checks a benchmark (see the module docstring) from the first source that applies.

    Args:
        name_or_spec: a name in ``BENCHMARKS`` or a ``BenchmarkSpec``.
        path: a local JSONL file in the benchmark's schema.
        limit: keep at most this many items: a subset drawn with ``seed``, kept in file order.
        seed: seed of the subset (and of the synthetic generator).
        root: a folder holding ``<name>/test.jsonl`` (required to exist for hub benchmarks when given).
            Without ``path`` and ``root``: the generator (``synthetic``), ``$HIPO_SHARED_DIR``'s copy, the hub.

    Raises:
        ValueError: unknown name, a non-positive limit.
        BenchmarkError: bad JSON, an empty file, a file in another schema, a row without a question, bad golds.
        BenchmarkFileNotFound: ``path`` (or the file under ``root``) does not exist.
        BenchmarkUnavailable: no local copy and the hub cannot be reached or read.
    """
    spec = get_spec(name_or_spec)
    if limit is not None and limit <= 0:
        raise ValueError(f"benchmark {spec.name!r}: limit must be positive, got {limit}")
    rows, source = _read_rows(spec, path, root, limit, seed)
    items, missing = _items(spec, rows, source)
    if limit is not None and limit < len(items):
        keep = sorted(random.Random(seed).sample(range(len(items)), limit))
        items = [items[index] for index in keep]
    return BenchmarkData(
        name=spec.name,
        items=items,
        source=source,
        n_rows=len(rows),
        n_skipped=len(missing),
        answer_format=spec.answer_format,
        skipped_lines=tuple(missing),
    )


def load_benchmark(
    name_or_spec: str | BenchmarkSpec,
    path: str | Path | None = None,
    limit: int | None = None,
    seed: int = 0,
    root: str | Path | None = None,
) -> list[BenchmarkItem]:
    """The items of a benchmark (see ``load_benchmark_data`` for the arguments and errors)."""
    return load_benchmark_data(name_or_spec, path=path, limit=limit, seed=seed, root=root).items
