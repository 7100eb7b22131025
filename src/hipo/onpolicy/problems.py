"""Training problems for on-policy pairs: a question, a gold answer and an answer format -- never an evaluation split.

Problems come from the synthetic generator's *training* split (``problems=synthetic`` / ``synthetic_easy``: the
level of that benchmark) or from a JSONL file in a benchmark's schema (``problems=jsonl problems.path=FILE
problems.benchmark=gsm8k``: read with that benchmark's question fields, gold reader and answer format, and checked
like a benchmark file). Before anything samples them, every problem is checked against the held-out benchmark of
that name, and any that is also in it is refused, by name (exit 2):

* the synthetic benchmarks are the generator's ``test`` split, a function of the question text
  (:func:`hipo.data.synthetic.problems.split_of`): a problem whose question falls in ``test`` (or in ``validation``,
  the held-out pairs of training) is refused;
* a file benchmark (GSM8K, MATH500, ...) is its test set, read where ``hipo eval`` reads it (``evaluate.
  benchmark_root``, ``$HIPO_SHARED_DIR``, the hub): a problem whose question (whitespace and case folded) is in it
  is refused. When the test set cannot be read the check cannot be made, and the command stops saying so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hipo.data.synthetic.problems import LEVELS, generate_problems, split_of
from hipo.errors import ConfigError, UserError
from hipo.eval.benchmarks import BenchmarkItem, get_spec, load_benchmark_data

GENERATED = {"synthetic": "multi_step", "synthetic_easy": "one_step"}  # generated benchmark -> generator level
SHOWN = 5


class HeldOutProblemError(UserError, ValueError):
    """Training problems that are also in an evaluation split."""


@dataclass(frozen=True)
class TrainingProblems:
    """Problems to sample on-policy pairs from.

    Attributes:
        benchmark: the benchmark whose schema they follow and whose held-out set they were checked against.
        items: the problems (id, question, gold).
        answer_format: how generations are read (``numeric`` | ``expression``).
        source: where they came from (``generated:<benchmark>:train`` or the file).
    """

    benchmark: str
    items: list[BenchmarkItem]
    answer_format: str
    source: str


def normalized_question(text: str) -> str:
    """The comparison key of a question: case folded, whitespace collapsed."""
    return " ".join(text.split()).casefold()


def _listing(labels: Sequence[str]) -> str:
    more = f" (+{len(labels) - SHOWN} more)" if len(labels) > SHOWN else ""
    return ", ".join(labels[:SHOWN]) + more


def check_not_held_out(problems: TrainingProblems, benchmark_root: str | None = None) -> None:
    """Raises :class:`HeldOutProblemError` naming every problem that is also in the held-out benchmark.

    Raises:
        HeldOutProblemError: some problems are in the held-out split (listed by id).
        BenchmarkUnavailable / BenchmarkError: the held-out test set of a file benchmark cannot be read.
    """
    name = problems.benchmark
    if name in GENERATED:
        held = [(item.id, split_of(item.question)) for item in problems.items]
        bad = [f"{item_id} ({split})" for item_id, split in held if split != "train"]
        where = f"the synthetic generator's test/validation splits (the held-out {name} benchmark and training's "
        where += "held-out pairs)"
    else:
        test = load_benchmark_data(name, root=benchmark_root)
        questions = {normalized_question(item.question): item.id for item in test.items}
        bad = [
            f"{item.id} (= {questions[key]})"
            for item in problems.items
            if (key := normalized_question(item.question)) in questions
        ]
        where = f"the held-out {name} test set ({test.source})"
    if bad:
        raise HeldOutProblemError(
            f"problems {problems.source}: {len(bad)} of {len(problems.items)} problems are in {where}: "
            f"{_listing(bad)}; on-policy pairs are never sampled from an evaluation split",
            hint="remove these problems from the file, or sample from a training split (problems=synthetic)",
        )


def load_training_problems(
    benchmark: str, path: str | None = None, seed: int = 0, limit: int | None = None
) -> TrainingProblems:
    """The problems of ``problems=``: the generator's training split of ``benchmark``'s level, or a file in its
    schema (see the module docstring); ``limit`` keeps the first N (generated) or a seeded subset (file).

    Raises:
        ConfigError: an unknown benchmark, a generated benchmark given without its level, a non-positive limit.
        BenchmarkError / BenchmarkFileNotFound: a file that is missing, empty, in another schema or with bad golds.
    """
    try:
        spec = get_spec(benchmark)
    except ValueError as error:
        raise ConfigError(f"problems.benchmark: {error}") from None
    if limit is not None and limit <= 0:
        raise ConfigError(f"limit={limit}: must be a positive number of problems")
    if path is not None:
        data = load_benchmark_data(spec, path=Path(path).expanduser(), limit=limit, seed=seed)
        return TrainingProblems(benchmark, data.items, data.answer_format, data.source)
    level = GENERATED.get(benchmark)
    if level is None or level not in LEVELS:
        raise ConfigError(
            f"problems.benchmark={benchmark}: only {sorted(GENERATED)} are generated; for {benchmark} pass a file of "
            "training problems in its schema: problems=jsonl problems.path=FILE"
        )
    count = limit if limit is not None else 1000
    generated = generate_problems(count, seed=seed, split="train", level=level)
    items = [BenchmarkItem(p.id, p.question, str(p.answer)) for p in generated]
    return TrainingProblems(benchmark, items, spec.answer_format, f"generated:{benchmark}:train")
