"""K graded samples per training problem, drawn chunk by chunk into a progress file that a rerun resumes from.

Problems are split into chunks of ``chunk_size`` in their given order. Chunk ``c`` is sampled with its own seed
(:func:`chunk_seed` of the generation seed and ``c``), so what a chunk draws depends only on its problems and the
settings -- not on which chunks ran before it in this process. Each finished chunk is appended to the samples file
(one JSON line per problem: the K texts, their extracted answers, grades and token counts) in one write, flushed
and fsynced. A run that is killed loses at most the chunk in flight; rerun with the same settings, it reads the file,
skips every problem already there and samples the rest, ending exactly where an uninterrupted run ends.

The file's first line is a header: the fingerprint of everything that decides the samples (model, adapter weights,
generation settings, problems, chunk size) and the MLflow run the samples belong to. A file written with other
settings is refused rather than mixed with new samples.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from hipo.errors import ConfigError
from hipo.eval.benchmarks import BenchmarkItem
from hipo.eval.generation import GenerationConfig, GenerationOutput, TextGenerator
from hipo.eval.prompts import fill_template, render_prompt
from hipo.eval.runner import grade_samples

log = logging.getLogger(__name__)

SAMPLES_FORMAT = 1


@dataclass
class ProblemSamples:
    """The K graded samples of one problem.

    Attributes:
        id: the problem's id; question, gold: its text and gold answer.
        prompt: the user message the samples answer (the prompt template filled with the question).
        texts: the K generations; extracted: their final answers (None: no answer); correct: their grades.
        tokens: each generation's token count (its stop token included).
        chunk: the chunk that sampled it.
    """

    id: str
    question: str
    gold: str
    prompt: str
    texts: list[str]
    extracted: list[str | None]
    correct: list[bool]
    tokens: list[int]
    chunk: int


def chunk_seed(seed: int, chunk: int) -> int:
    """The sampling seed of chunk ``chunk`` (a hash: no two (seed, chunk) pairs share one by accident)."""
    return int.from_bytes(hashlib.sha256(f"hipo-pairs:{seed}:{chunk}".encode()).digest()[:4], "big")


def chunks_of(items: Sequence[BenchmarkItem], size: int) -> list[list[BenchmarkItem]]:
    """``items`` in consecutive chunks of ``size`` (the last may be shorter)."""
    if size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {size}")
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


class SampleFile:
    """The samples file of one ``hipo pairs`` output: header line, then one line per sampled problem.

    Args:
        path: the file.
        fingerprint: what the samples depend on (a header with another one is refused).
        settings: the human-readable settings behind the fingerprint (kept in the header).
    """

    def __init__(self, path: Path, fingerprint: str, settings: dict[str, Any]) -> None:
        self.path = path
        self.fingerprint = fingerprint
        self.settings = settings

    def read(self) -> tuple[dict[str, ProblemSamples], str | None]:
        """(problems already sampled by id, the MLflow run they belong to); both empty for a new file.

        A last line cut short by a crash is dropped (the file is truncated to its last complete line).

        Raises:
            ConfigError: the file holds samples of other settings, or is not a samples file.
        """
        if not self.path.exists():
            return {}, None
        raw = self.path.read_bytes()
        complete = raw[: raw.rfind(b"\n") + 1]
        if len(complete) != len(raw):
            log.warning("%s: dropping an incomplete last line (a run stopped while writing it)", self.path)
            with self.path.open("r+b") as handle:
                handle.truncate(len(complete))
        lines = complete.decode("utf-8").splitlines()
        if not lines:
            return {}, None
        try:
            header = json.loads(lines[0])
        except json.JSONDecodeError:
            header = {}
        if not isinstance(header, dict) or header.get("hipo_samples") != SAMPLES_FORMAT:
            raise ConfigError(f"{self.path}: not a hipo pairs samples file; move it away or choose another out=")
        if header.get("fingerprint") != self.fingerprint:
            changed = sorted(k for k, v in self.settings.items() if header.get("settings", {}).get(k) != v)
            raise ConfigError(
                f"{self.path} holds samples drawn with other settings (differing: {', '.join(changed) or 'model'}); "
                "a rerun resumes only the same command",
                hint="choose another out=, or delete that file to sample again",
            )
        done = {}
        for line in lines[1:]:
            record = ProblemSamples(**json.loads(line))
            done[record.id] = record
        return done, header.get("run_id")

    def start(self, run_id: str | None) -> None:
        """Writes the header of a new file (an existing one is kept: it is being resumed)."""
        if self.path.exists() and self.path.stat().st_size > 0:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        header = {"hipo_samples": SAMPLES_FORMAT, "fingerprint": self.fingerprint, "settings": self.settings}
        self._write([{**header, "run_id": run_id}])

    def append(self, records: Iterable[ProblemSamples]) -> None:
        """Appends finished problems in one write, flushed to disk."""
        self._write([asdict(record) for record in records])

    def _write(self, rows: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())


@dataclass
class SamplingProgress:
    """What this process sampled: chunks, problems, generated tokens and generation seconds."""

    chunks: int = 0
    problems: int = 0
    tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def sample_chunk(
    generator: TextGenerator,
    tokenizer: Any,
    chunk: Sequence[BenchmarkItem],
    index: int,
    answer_format: str,
    config: GenerationConfig,
) -> tuple[list[ProblemSamples], GenerationOutput]:
    """The graded samples of chunk ``index`` (seeded by :func:`chunk_seed`), and the generation's output."""
    messages = [fill_template(config.prompt_template, item.question) for item in chunk]
    prompts = [render_prompt(tokenizer, item.question, config.prompt_template, config.system_prompt) for item in chunk]
    output = generator.generate_texts(prompts, replace(config, seed=chunk_seed(config.seed, index)))
    records = []
    for item, message, texts, counts in zip(chunk, messages, output.completions, output.token_counts, strict=True):
        extracted, correct = grade_samples(texts, item.gold, answer_format)
        records.append(
            ProblemSamples(item.id, item.question, item.gold, message, texts, extracted, correct, counts, index)
        )
    return records, output


def sample_problems(
    generator: TextGenerator,
    tokenizer: Any,
    items: Sequence[BenchmarkItem],
    answer_format: str,
    config: GenerationConfig,
    chunk_size: int,
    store: SampleFile,
    done: dict[str, ProblemSamples],
    report: Callable[[str], None] = lambda line: print(line, flush=True),
) -> tuple[list[ProblemSamples], SamplingProgress]:
    """Samples ``config.n`` generations for every problem not in ``done``, chunk by chunk (see the module docstring).

    Args:
        generator: the engine (the decode loop, or vLLM); the K samples of a prompt share one prefill there.
        tokenizer: its tokenizer (renders the prompts with the chat template).
        items: the problems, in order.
        answer_format: how generations are graded.
        config: decoding settings (sampling, ``n`` = K, the base seed, the prompt template).
        chunk_size: problems per chunk (the unit of resume).
        store: the samples file to append each finished chunk to.
        done: problems already in the file (not sampled again).
        report: where the one-line progress of each chunk goes.

    Returns:
        (every problem's samples in ``items`` order, this process's sampling progress).
    """
    chunks = chunks_of(items, chunk_size)
    progress = SamplingProgress()
    started = time.perf_counter()
    todo = sum(1 for item in items if item.id not in done)
    for index, chunk in enumerate(chunks):
        pending = [item for item in chunk if item.id not in done]
        if not pending:
            continue
        if len(pending) != len(chunk):  # chunks are written whole: a partial one means the problems changed
            raise ConfigError(f"{store.path}: chunk {index} is partly sampled; the problem list changed since")
        records, output = sample_chunk(generator, tokenizer, chunk, index, answer_format, config)
        store.append(records)
        done.update({record.id: record for record in records})
        progress.chunks += 1
        progress.problems += len(records)
        progress.tokens += output.new_tokens
        progress.seconds += output.seconds
        elapsed = time.perf_counter() - started
        eta = elapsed / progress.problems * (todo - progress.problems)
        graded = [c for r in done.values() for c in r.correct]
        report(
            f"pairs: chunk {index + 1}/{len(chunks)}: {len(done)}/{len(items)} problems sampled, "
            f"pass@1 {sum(graded) / max(len(graded), 1):.3f}, {progress.tokens_per_second:.1f} tok/s, "
            f"ETA {eta / 60:.1f} min"
        )
    return [done[item.id] for item in items], progress
