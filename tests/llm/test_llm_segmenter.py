"""The ``llm`` segmenter against the fake server: decomposition, validation, spans of the joined text, failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hipo.data.errors import RowLocation, SegmentationError
from hipo.data.llm_segmenter import LLMDecomposer, LLMSegmenter, join_parts
from hipo.data.segmenters.base import segment_rows
from hipo.data.stats import SEGMENTATION_FAILED, DataStats
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


def answer_from_table(server: Any, table: dict[str, Any]) -> Any:
    """A server default that decomposes the original answer found in the user message, via ``table``."""

    def respond(body: dict[str, Any]) -> Any:
        original = body["messages"][1]["content"].split("## Original answer\n", 1)[1]
        return server.reply(table[original])

    return respond


def make_decomposer(server: Any, cache_dir: Path | None = None, **kwargs: Any) -> LLMDecomposer:
    client = ChatClient(
        base_url=server.url, model="fake-rewriter", api_key="k", timeout_s=0.3, max_retries=1, backoff_s=0.01,
        cache_dir=cache_dir,
    )  # fmt: skip
    return LLMDecomposer(client, **kwargs)


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
    assert decomposer.stats.failed_validation == 1 and decomposer.stats.succeeded == 0
    assert fake_openai.count == 2  # first attempt + one retry
    assert decomposer.decompose(ROW["question"], ROW["rejected"]) is None  # memoized: no new request
    assert fake_openai.count == 2


def test_empty_part_fails_validation(fake_openai) -> None:
    fake_openai.always({"Rq": "  ", "Mt": "3 + 4 = 7.", "Ra": "\\boxed{7}"})
    decomposer = make_decomposer(fake_openai)
    assert decomposer.decompose(ROW["question"], ROW["chosen"]) is None
    assert decomposer.stats.failed_validation == 1


def test_answer_without_stated_result_needs_no_match(fake_openai) -> None:
    fake_openai.push({"Rq": "Prove it.", "Mt": "By induction.", "Ra": "Hence the claim holds."})
    decomposer = make_decomposer(fake_openai)
    assert decomposer.decompose("Prove P(n).", "Use induction on n; the claim follows.") is not None


def test_malformed_then_good_and_429_then_success(fake_openai) -> None:
    fake_openai.push("not json")
    fake_openai.push(status=429)
    fake_openai.push(GOOD[ROW["chosen"]])
    client = ChatClient(base_url=fake_openai.url, api_key="k", max_retries=2, backoff_s=0.01, timeout_s=1.0)
    assert LLMDecomposer(client).decompose(ROW["question"], ROW["chosen"]) == GOOD[ROW["chosen"]]
    assert fake_openai.count == 3


def test_timeout_is_a_request_failure(fake_openai) -> None:
    fake_openai.always(GOOD[ROW["chosen"]], delay_s=0.8)
    decomposer = make_decomposer(fake_openai)
    assert decomposer.decompose(ROW["question"], ROW["chosen"]) is None
    assert decomposer.stats.failed_request == 1 and decomposer.stats.failed_validation == 0


def test_cache_hit_makes_no_request(fake_openai, tmp_path: Path) -> None:
    fake_openai.default = answer_from_table(fake_openai, GOOD)
    make_decomposer(fake_openai, tmp_path).decompose(ROW["question"], ROW["chosen"])
    assert make_decomposer(fake_openai, tmp_path).decompose(ROW["question"], ROW["chosen"]) == GOOD[ROW["chosen"]]
    assert fake_openai.count == 1


def test_failed_rows_are_dropped_and_counted_by_the_pipeline(fake_openai) -> None:
    table = dict(GOOD)
    bad_row = {"question": "What is 1 + 1?", "chosen": "1 + 1 = 2. The answer is 2.", "rejected": "It is 3."}
    table[bad_row["chosen"]] = {"Rq": "Add one and one.", "Mt": "1 + 1 = 2.", "Ra": "\\boxed{3}"}  # answer changed
    table[bad_row["rejected"]] = {"Rq": "Add.", "Mt": "Guess.", "Ra": "3"}
    fake_openai.default = answer_from_table(fake_openai, table)
    segmenter = LLMSegmenter(make_decomposer(fake_openai))
    rows = [(LOCATION, ROW), (RowLocation("pairs.jsonl", 4), bad_row)]
    segmenter.prefetch(rows, concurrency=4)
    stats = DataStats()
    pairs = list(segment_rows(rows, segmenter, stats))
    assert len(pairs) == 1 and pairs[0].chosen.segment_text("Ra") == "He has \\boxed{7}."
    assert stats.skipped[SEGMENTATION_FAILED] == 1
    assert segmenter.decomposer.stats.failed_validation == 1
    with pytest.raises(SegmentationError, match="pairs.jsonl:4"):
        segmenter.segment_pair(bad_row, RowLocation("pairs.jsonl", 4))
