"""The ``llm`` segmenter against the fake server: decomposition, validation, spans, and the concurrent, resumable
decomposition that ``prepare_data`` and ``hipo segment`` run before segmenting (speed-up, resumption, failures)."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hipo.app.segment import first_pairs
from hipo.data.data_stats import EMPTY_RESPONSE, SEGMENTATION_FAILED, DataStats
from hipo.data.prepare import PreparedData, prepare_data
from hipo.data.row_errors import RowLocation, SegmentationError
from hipo.data.segmenters.base import segment_rows
from hipo.data.segmenters.llm import LLMDecomposer, LLMSegmenter, join_parts
from hipo.data.sources import JsonlSource
from hipo.data.tokenize import PreferenceTokenizer
from hipo.llm.client import ChatClient

ROW = {
    "question": "Tom has 3 apples and buys 4 more. How many apples does he have?",
    "chosen": "He has 3 + 4 = 7 apples. The answer is 7.",
    "rejected": "He has 3 + 4 = 8 apples. The answer is 8.",
}
LOCATION = RowLocation("pairs.jsonl", 3)
GOOD = {
    ROW["chosen"]: {"Rq": "Tom starts with 3 apples and buys 4.", "Mt": "Add: 3 + 4 = 7.", "Ra": "He has \\boxed{7}."},
    ROW["rejected"]: {
        "Rq": "Tom starts with 3 apples and buys 4.",
        "Mt": "Add: 3 + 4 = 8.",
        "Ra": "He has \\boxed{8}.",
    },
}


def original_answer(body: dict[str, Any]) -> str:
    """The raw answer a decomposition request is about."""
    return body["messages"][1]["content"].split("## Original answer\n", 1)[1]


def answer_from_table(server: Any, table: dict[str, Any], delay_s: float = 0.0) -> Any:
    """A server default that decomposes the original answer found in the user message, via ``table``."""

    def respond(body: dict[str, Any]) -> Any:
        return server.reply(table[original_answer(body)], delay_s=delay_s)

    return respond


def make_decomposer(server: Any, cache_dir: Path | None = None, timeout_s: float = 5.0, **kwargs: Any) -> LLMDecomposer:
    """A decomposer against ``server``; the timeout is generous (a loaded CI machine) unless a test times out."""
    client = ChatClient(
        base_url=server.url, model="fake-rewriter", timeout_s=timeout_s, max_retries=1, max_invalid_retries=1,
        cache_dir=cache_dir,
    )  # fmt: skip
    return LLMDecomposer(client, **{"progress": False, **kwargs})


def numbered_rows(path: Path, count: int) -> tuple[JsonlSource, dict[str, dict[str, str]]]:
    """Writes ``count`` arithmetic rows to ``path``; returns its source and the decomposition of every answer."""
    table: dict[str, dict[str, str]] = {}
    with path.open("w", encoding="utf-8") as handle:
        for i in range(count):
            right, wrong = i + 5, i + 6
            row = {
                "question": f"Ann has {i} pens and gets 5 more. How many pens does she have?",
                "chosen": f"{i} + 5 = {right}. The answer is {right}.",
                "rejected": f"{i} + 5 = {wrong}. The answer is {wrong}.",
            }
            handle.write(json.dumps(row) + "\n")
            for answer, result in ((row["chosen"], right), (row["rejected"], wrong)):
                ra = f"So {result}. The answer is {result}."
                table[answer] = {"Rq": f"Ann has {i} pens, gets 5.", "Mt": f"{i} + 5 = {result}.", "Ra": ra}
    return JsonlSource(path), table


def prepare(source: Any, segmenter: LLMSegmenter, tokenizer: Any, root: Path, **options: Any) -> PreparedData:
    return prepare_data(source, segmenter, PreferenceTokenizer(tokenizer), val_fraction=0.0, cache_root=root, **options)


def token_view(prepared: PreparedData) -> list[list[list[int]]]:
    """The tokenized train pairs as lists (ids and segment ids of both sides), for equality checks."""
    return [
        [np.asarray(seq.input_ids).tolist() + np.asarray(seq.segment_ids).tolist() for seq in (p.chosen, p.rejected)]
        for p in prepared.train
    ]


# ---- one decomposition ---------------------------------------------------------------------------------------------


def test_segment_pair_joins_parts_in_order_and_spans_match(fake_openai) -> None:
    fake_openai.default = answer_from_table(fake_openai, GOOD)
    segmenter = LLMSegmenter(make_decomposer(fake_openai), separator="\n\n")
    pair = segmenter.segment_pair(ROW, LOCATION)
    assert pair.prompt == ROW["question"]
    expected = "Tom starts with 3 apples and buys 4.\n\nAdd: 3 + 4 = 7.\n\nHe has \\boxed{7}."
    assert pair.chosen.text == expected
    assert [span.name for span in pair.chosen.spans] == ["Rq", "Mt", "Ra"]
    # Spans cut from the joined text give back each part exactly (independent check with str.index).
    for name, text in GOOD[ROW["chosen"]].items():
        start = expected.index(text)
        span = next(s for s in pair.chosen.spans if s.name == name)
        assert (span.start, span.end) == (start, start + len(text))
    assert pair.rejected.segment_text("Mt") == "Add: 3 + 4 = 8."
    assert pair.meta["source"] == "pairs.jsonl" and pair.meta["row"] == 3
    assert fake_openai.count == 2


def test_segment_order_follows_the_config_not_the_reply(fake_openai) -> None:
    fake_openai.push({"Ra": "So \\boxed{7}.", "Rq": "Count apples.", "Mt": "3 + 4 = 7."})
    decomposer = make_decomposer(fake_openai, segments=("Rq", "Mt", "Ra"))
    parts = decomposer.decompose(ROW["question"], ROW["chosen"])
    response = join_parts(parts, decomposer.segments, " | ")
    assert response.text == "Count apples. | 3 + 4 = 7. | So \\boxed{7}."


def test_changed_final_answer_fails_validation_and_is_counted(fake_openai) -> None:
    fixed = {"Rq": "Tom has 3 apples, buys 4.", "Mt": "3 + 4 = 7.", "Ra": "\\boxed{7}"}  # the rewrite "fixed" 8
    fake_openai.always(fixed)
    decomposer = make_decomposer(fake_openai)
    assert decomposer.decompose(ROW["question"], ROW["rejected"]) is None
    assert decomposer.stats.failures == {"invalid": 1} and decomposer.stats.done == 0
    assert fake_openai.count == 2  # first attempt + one re-ask
    assert decomposer.decompose(ROW["question"], ROW["rejected"]) is None  # memoized: no new request
    assert fake_openai.count == 2


def test_empty_part_fails_validation(fake_openai) -> None:
    fake_openai.always({"Rq": "  ", "Mt": "3 + 4 = 7.", "Ra": "\\boxed{7}"})
    decomposer = make_decomposer(fake_openai)
    assert decomposer.decompose(ROW["question"], ROW["chosen"]) is None
    assert decomposer.stats.failures == {"invalid": 1}


def test_answer_without_stated_result_needs_no_match(fake_openai) -> None:
    fake_openai.push({"Rq": "Prove it.", "Mt": "By induction.", "Ra": "Hence the claim holds."})
    decomposer = make_decomposer(fake_openai)
    assert decomposer.decompose("Prove P(n).", "Use induction on n; the claim follows.") is not None


def test_malformed_then_429_then_good(fake_openai) -> None:
    fake_openai.push("not json")
    fake_openai.push(status=429)
    fake_openai.push(GOOD[ROW["chosen"]])
    client = ChatClient(base_url=fake_openai.url, max_retries=2, timeout_s=1.0)
    assert LLMDecomposer(client).decompose(ROW["question"], ROW["chosen"]) == GOOD[ROW["chosen"]]
    assert fake_openai.count == 3


@pytest.mark.slow  # waits for request timeouts
def test_timeout_is_a_request_failure(fake_openai) -> None:
    fake_openai.always(GOOD[ROW["chosen"]], delay_s=0.8)
    decomposer = make_decomposer(fake_openai, timeout_s=0.3)
    assert decomposer.decompose(ROW["question"], ROW["chosen"]) is None
    assert decomposer.stats.failures == {"timeout": 1}


def test_cache_hit_makes_no_request(fake_openai, tmp_path: Path) -> None:
    fake_openai.default = answer_from_table(fake_openai, GOOD)
    make_decomposer(fake_openai, tmp_path).decompose(ROW["question"], ROW["chosen"])
    assert make_decomposer(fake_openai, tmp_path).decompose(ROW["question"], ROW["chosen"]) == GOOD[ROW["chosen"]]
    assert fake_openai.count == 1


# ---- the whole dataset before segmenting ---------------------------------------------------------------------------


@pytest.mark.slow
def test_prepare_data_decomposes_concurrently_8x_faster(fake_openai, byte_tokenizer, tmp_path: Path) -> None:
    """8 rows = 16 requests at 0.5 s each: one at a time (~8 s) against 16 in flight (~0.5 s)."""
    source, table = numbered_rows(tmp_path / "rows.jsonl", 8)
    fake_openai.default = answer_from_table(fake_openai, table, delay_s=0.5)

    def run(concurrency: int) -> tuple[PreparedData, float]:
        folder = tmp_path / f"concurrency-{concurrency}"
        decomposer = make_decomposer(fake_openai, folder / "llm", concurrency=concurrency)
        segmenter = LLMSegmenter(decomposer)
        started = time.monotonic()
        prepared = prepare(source, segmenter, byte_tokenizer, folder / "data")
        return prepared, time.monotonic() - started

    serial, serial_s = run(1)
    assert fake_openai.count == 16 and fake_openai.max_in_flight == 1
    fake_openai.max_in_flight = 0
    parallel, parallel_s = run(16)
    assert fake_openai.count == 32 and fake_openai.max_in_flight == 16
    print(f"\nprepare_data, 16 requests at 0.5 s: concurrency 1 {serial_s:.2f} s, concurrency 16 {parallel_s:.2f} s, "
          f"speed-up {serial_s / parallel_s:.1f}x")  # fmt: skip
    assert len(parallel.train) == 8 and token_view(parallel) == token_view(serial)
    assert serial_s / parallel_s >= 8


@pytest.mark.slow  # three decompositions of 12 requests each
def test_interrupted_decomposition_resumes_exactly(fake_openai, byte_tokenizer, tmp_path: Path) -> None:
    """The server dies after K replies; the rerun asks for exactly the rest; a third run asks for nothing."""
    source, table = numbered_rows(tmp_path / "rows.jsonl", 6)  # 12 requests
    healthy = answer_from_table(fake_openai, table, delay_s=0.02)
    fake_openai.default = healthy
    reference = prepare(source, LLMSegmenter(make_decomposer(fake_openai, tmp_path / "ref")), byte_tokenizer,
                        tmp_path / "ref-data")  # fmt: skip
    assert fake_openai.count == 12 and len(reference.train) == 6

    answered: list[str] = []  # answers that got a reply before the server "died"
    lock = threading.Lock()

    def dies_after_k(body: dict[str, Any], k: int = 7) -> Any:
        with lock:
            alive = len(answered) < k
            if alive:
                answered.append(original_answer(body))
        return healthy(body) if alive else fake_openai.reply(status=503)

    fake_openai.default = dies_after_k
    llm_cache, data_cache = tmp_path / "llm", tmp_path / "data"

    def run(root: Path = data_cache) -> tuple[PreparedData, LLMSegmenter]:  # a fresh segmenter: a new process
        segmenter = LLMSegmenter(make_decomposer(fake_openai, llm_cache, concurrency=4))
        return prepare(source, segmenter, byte_tokenizer, root), segmenter

    first, segmenter = run()
    assert fake_openai.count == 12 + 12 + 5  # all 12 tried; the 5 that met a 503 were retried once (max_retries=1)
    assert segmenter.decomposer.stats.done == 7 and segmenter.decomposer.stats.failures == {"http": 5}
    assert first.stats.skipped[SEGMENTATION_FAILED] == 6 - len(first.train) >= 3
    assert not list(data_cache.glob("*.npz"))  # request failures: the prepared data is not cached
    remaining = sorted(set(table) - set(answered))
    assert len(remaining) == 5

    fake_openai.default = healthy
    before = fake_openai.count
    second, segmenter = run()
    assert sorted(original_answer(body) for body in fake_openai.requests[before:]) == remaining
    assert segmenter.decomposer.stats.cached == 7 and segmenter.decomposer.stats.done == 12
    assert not second.from_cache and token_view(second) == token_view(reference)

    before = fake_openai.count
    third, _ = run()
    assert third.from_cache and token_view(third) == token_view(reference)
    fourth, segmenter = run(tmp_path / "other-data")  # no prepared data: every reply comes from the reply cache
    assert segmenter.decomposer.stats.cached == 12 and token_view(fourth) == token_view(reference)
    assert fake_openai.count == before


@pytest.mark.slow  # two data preparations against the fake server
def test_failures_under_skip_are_counted_and_the_result_is_cached(
    fake_openai, byte_tokenizer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source, table = numbered_rows(tmp_path / "rows.jsonl", 4)
    broken = next(answer for answer in table if answer.startswith("2 + 5 = 8"))  # row 2, rejected
    table[broken] = {**table[broken], "Ra": "The answer is 7."}  # the rewrite changed the final answer: invalid
    with source.path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"question": "Empty?", "chosen": "", "rejected": "No."}) + "\n")
    fake_openai.default = answer_from_table(fake_openai, table)
    caplog.set_level(logging.INFO, logger="hipo.data.segmenters.llm")
    segmenter = LLMSegmenter(make_decomposer(fake_openai, tmp_path / "llm"), on_failure="skip")
    prepared = prepare(source, segmenter, byte_tokenizer, tmp_path / "data")
    assert prepared.stats.skipped == {SEGMENTATION_FAILED: 1, EMPTY_RESPONSE: 1}
    assert len(prepared.train) == 3
    assert fake_openai.count == 8 + 1  # no request for the empty row; one re-ask for the invalid reply
    assert segmenter.decomposer.stats.failures == {"invalid": 1}
    summary = [r.getMessage() for r in caplog.records if "decomposition of 8 responses" in r.getMessage()]
    assert summary and "7 done (0 cached), 1 failed (invalid: 1), 90 tokens" in summary[0]
    # A validation failure is final: the prepared data is cached and a rerun makes no request.
    again = prepare(source, LLMSegmenter(make_decomposer(fake_openai, tmp_path / "llm")), byte_tokenizer,
                    tmp_path / "data")  # fmt: skip
    assert again.from_cache and again.stats.skipped[SEGMENTATION_FAILED] == 1 and fake_openai.count == 9
    # single_segment keeps the pair whole instead, and counts it.
    whole = prepare(source, LLMSegmenter(make_decomposer(fake_openai, tmp_path / "llm"), on_failure="single_segment"),
                    byte_tokenizer, tmp_path / "data")  # fmt: skip
    assert whole.stats.single_segment == 1 and len(whole.train) == 4


@pytest.mark.slow  # composes and runs `hipo segment`
def test_hipo_segment_prepares_only_the_rows_it_shows_concurrently(fake_openai, tmp_path: Path) -> None:
    source, table = numbered_rows(tmp_path / "rows.jsonl", 8)
    broken = next(answer for answer in table if answer.startswith("1 + 5 = 6"))
    table[broken] = {**table[broken], "Ra": "The answer is 9."}
    fake_openai.default = answer_from_table(fake_openai, table, delay_s=0.2)
    segmenter = LLMSegmenter(make_decomposer(fake_openai, concurrency=16))
    stats = DataStats()
    pairs = first_pairs(source.rows(), segmenter, stats, 3)
    assert [pair.chosen.segment_text("Ra")[-2:] for pair in pairs] == ["5.", "7.", "8."]  # row 1 failed and was skipped
    assert stats.rows_read == 4 and stats.skipped[SEGMENTATION_FAILED] == 1
    assert fake_openai.max_in_flight == 6  # the first three rows at once, then one more row
    assert fake_openai.count == 6 + 1 + 2


def test_segment_rows_after_prepare_reads_back_without_requests(fake_openai) -> None:
    table = dict(GOOD)
    bad_row = {"question": "What is 1 + 1?", "chosen": "1 + 1 = 2. The answer is 2.", "rejected": "It is 3."}
    table[bad_row["chosen"]] = {"Rq": "Add one and one.", "Mt": "1 + 1 = 2.", "Ra": "\\boxed{3}"}  # answer changed
    table[bad_row["rejected"]] = {"Rq": "Add.", "Mt": "Guess.", "Ra": "3"}
    fake_openai.default = answer_from_table(fake_openai, table)
    segmenter = LLMSegmenter(make_decomposer(fake_openai))
    rows = [(LOCATION, ROW), (RowLocation("pairs.jsonl", 4), bad_row)]
    assert segmenter.prepare(rows) is True  # a validation failure is final
    sent = fake_openai.count
    stats = DataStats()
    pairs = list(segment_rows(rows, segmenter, stats))
    assert fake_openai.count == sent
    assert len(pairs) == 1 and pairs[0].chosen.segment_text("Ra") == "He has \\boxed{7}."
    assert stats.skipped[SEGMENTATION_FAILED] == 1
    with pytest.raises(SegmentationError, match="pairs.jsonl:4"):
        segmenter.segment_pair(bad_row, RowLocation("pairs.jsonl", 4))
