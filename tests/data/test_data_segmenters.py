"""Segmenters (fields, tags, rules) and the on_failure policies."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hipo.data.data_stats import DataStats
from hipo.data.row_errors import DataError, RowLocation, SegmentationError
from hipo.data.segmented import SegmentedResponse
from hipo.data.segmenters import FieldsSegmenter, RulesSegmenter, TagsSegmenter, segment_rows, split_units

LOC = RowLocation("data/train.jsonl", 7)
QUESTION = "A shop sells 4 pens at $3 each. How much do the pens cost?"


def texts(response: SegmentedResponse) -> dict[str, str]:
    return {span.name: response.text[span.start : span.end] for span in response.spans}


# ---------------------------------------------------------------- fields


def test_fields_joins_in_configured_order_and_spans_index_the_joined_text() -> None:
    """Columns listed in dict order Ra, Mt, Rq must still join as Rq, Mt, Ra.

    Joined: "We need X." + "\\n\\n" + "4 * 3 = 12." + "\\n\\n" + "12" -> Rq [0, 10), Mt [12, 23), Ra [25, 27).
    """
    row = {"question": QUESTION, "Ra_a": "12", "Mt_a": " 4 * 3 = 12. ", "Rq_a": "We need X."}
    row |= {"Ra_b": "13", "Mt_b": "4 * 3 = 13.", "Rq_b": "We need X."}
    pair = FieldsSegmenter().segment_pair(row, LOC)
    assert pair.chosen.text == "We need X.\n\n4 * 3 = 12.\n\n12"
    assert [(s.name, s.start, s.end) for s in pair.chosen.spans] == [("Rq", 0, 10), ("Mt", 12, 23), ("Ra", 25, 27)]
    assert texts(pair.rejected) == {"Rq": "We need X.", "Mt": "4 * 3 = 13.", "Ra": "13"}
    assert pair.meta == {"source": "data/train.jsonl", "row": 7}


def test_fields_custom_patterns_separator_and_order() -> None:
    row = {"q": "Q?", "good_A": "a", "good_B": "bb", "bad_A": "x", "bad_B": "yy"}
    seg = FieldsSegmenter(["B", "A"], "good_{segment}", "bad_{segment}", " | ", fallback_segment="A", prompt_field="q")
    pair = seg.segment_pair(row, LOC)
    assert pair.chosen.text == "bb | a"
    assert [(s.name, s.start, s.end) for s in pair.chosen.spans] == [("B", 0, 2), ("A", 5, 6)]


def test_fields_empty_part_fails_or_becomes_empty_span() -> None:
    row = {"question": "Q", "Rq_a": "", "Mt_a": "m", "Ra_a": "r", "Rq_b": "q", "Mt_b": "m", "Ra_b": "r"}
    with pytest.raises(SegmentationError, match=r"data/train.jsonl:7: field 'Rq_a'"):
        FieldsSegmenter().segment_pair(row, LOC)
    pair = FieldsSegmenter(allow_empty_segments=True).segment_pair(row, LOC)
    assert pair.chosen.text == "m\n\nr"
    assert [(s.name, s.start, s.end) for s in pair.chosen.spans] == [("Rq", 0, 0), ("Mt", 0, 1), ("Ra", 3, 4)]


def test_fields_missing_column_is_a_data_error_naming_field_and_row() -> None:
    row = {"question": "Q", "Rq_a": "q", "Mt_a": "m", "Rq_b": "q", "Mt_b": "m", "Ra_b": "r"}
    with pytest.raises(DataError, match=r"data/train.jsonl:7: field 'Ra_a': missing field") as error:
        FieldsSegmenter().segment_pair(row, LOC)
    assert not isinstance(error.value, SegmentationError)  # a schema error is not subject to on_failure


# ---------------------------------------------------------------- tags


@pytest.mark.parametrize(
    "response",
    [
        "<Rq>We need the cost.</Rq>\n<Mt>4 * 3 = 12</Mt>\n<Ra>12</Ra>",
        "<refined_query> We need the cost. </refined_query><meta-thinking>4 * 3 = 12</meta-thinking><RA>12</RA>",
        "**Refined Query:** We need the cost.\n\n**Meta-thinking:**\n4 * 3 = 12\n\n**Refined Answer:** 12",
        "### Refined Query\nWe need the cost.\n### Meta-thinking\n4 * 3 = 12\n### Refined Answer\n12\n",
        "Refined Query: We need the cost.\nMeta thinking: 4 * 3 = 12\nRefined Answer (Ra): 12",
        "Sure!\n\n## 1. Refined Query:\nWe need the cost.\n\n## 2. Meta-Thinking:\n4 * 3 = 12\n\n"
        "**Refined Answer**: 12",
    ],
)
def test_tags_and_headers_styles(response: str) -> None:
    """Each markup yields the section bodies, stripped; headers and tags stay outside the spans."""
    row = {"question": QUESTION, "chosen": response, "rejected": response}
    segmented = TagsSegmenter().segment_response(row, "chosen", LOC)
    assert texts(segmented) == {"Rq": "We need the cost.", "Mt": "4 * 3 = 12", "Ra": "12"}


def test_tags_failures_name_file_line_and_field() -> None:
    row = {
        "question": QUESTION,
        "chosen": "<Rq>a</Rq><Mt>b</Mt>",
        "rejected": "<Rq>a</Rq><Rq>b</Rq><Mt>c</Mt><Ra>d</Ra>",
    }
    with pytest.raises(SegmentationError, match=r"data/train.jsonl:7: field 'chosen': no Ra section"):
        TagsSegmenter().segment_response(row, "chosen", LOC)
    with pytest.raises(SegmentationError, match="'Rq' appears more than once"):
        TagsSegmenter().segment_response(row, "rejected", LOC)


def test_tags_optional_segment_becomes_empty_span_in_place() -> None:
    row = {"question": QUESTION, "chosen": "<Mt>b</Mt> <Ra>c</Ra>", "rejected": "x"}
    segmented = TagsSegmenter(optional=["Rq"]).segment_response(row, "chosen", LOC)
    assert [(s.name, s.start, s.end) for s in segmented.spans] == [("Rq", 4, 4), ("Mt", 4, 5), ("Ra", 15, 16)]


def test_plain_sentence_starting_with_an_alias_is_not_a_header() -> None:
    row = {"question": QUESTION, "chosen": "Rather long text\nMt Everest is high", "rejected": "x"}
    with pytest.raises(SegmentationError):
        TagsSegmenter(style="headers").segment_response(row, "chosen", LOC)


# ---------------------------------------------------------------- rules


def test_rules_paragraphs() -> None:
    response = (
        "We need to find how much the pens cost.\n\n4 pens at $3 each.\n\nSo 4 * 3 = 12.\n\nThe answer is \\boxed{12}."
    )
    row = {"question": QUESTION, "chosen": response, "rejected": response}
    segmented = RulesSegmenter().segment_response(row, "chosen", LOC)
    assert texts(segmented) == {
        "Rq": "We need to find how much the pens cost.",
        "Mt": "4 pens at $3 each.\n\nSo 4 * 3 = 12.",
        "Ra": "The answer is \\boxed{12}.",
    }


def test_rules_sentences_overlap_restatement_and_conclusion_word() -> None:
    """One paragraph -> sentences; 'pens cost each' overlaps the question; 'Hence' marks Ra; 3.5 never splits."""
    response = "Pens cost $3 each. Four of them cost 4 * 3.5 - 2 dollars. Hence they cost 12 dollars."
    row = {"question": QUESTION, "chosen": response, "rejected": response}
    segmented = RulesSegmenter().segment_response(row, "chosen", LOC)
    assert texts(segmented) == {
        "Rq": "Pens cost $3 each.",
        "Mt": "Four of them cost 4 * 3.5 - 2 dollars.",
        "Ra": "Hence they cost 12 dollars.",
    }


def test_rules_without_restatement_gives_empty_rq() -> None:
    response = "Multiply four by three.\n\nThat is 12.\n\n#### 12"
    row = {"question": QUESTION, "chosen": response, "rejected": response}
    segmented = RulesSegmenter().segment_response(row, "chosen", LOC)
    assert [(s.name, s.start, s.end) for s in segmented.spans][0] == ("Rq", 0, 0)
    assert texts(segmented)["Mt"] == "Multiply four by three.\n\nThat is 12."
    with pytest.raises(SegmentationError, match="no restatement"):
        RulesSegmenter(require_query=True).segment_response(row, "chosen", LOC)


@pytest.mark.parametrize(
    ("response", "reason"),
    [("4 * 3 = 12.\n\nNice pens.\n\nGood luck.", "no final answer"), ("The answer is 12.", "no reasoning")],
)
def test_rules_failures(response: str, reason: str) -> None:
    row = {"question": QUESTION, "chosen": response, "rejected": response}
    with pytest.raises(SegmentationError, match=reason):
        RulesSegmenter().segment_response(row, "chosen", LOC)


_sentence = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=0, max_size=40)


@settings(max_examples=200, deadline=None)
@given(st.lists(_sentence, min_size=1, max_size=8), st.sampled_from(["\n\n", ". ", "\n", " "]), st.booleans())
def test_rules_spans_never_overlap_and_stay_in_order(pieces: list[str], joiner: str, with_answer: bool) -> None:
    """On arbitrary text the rules segmenter either fails cleanly or returns ordered, disjoint, stripped spans."""
    response = joiner.join(pieces) + ("\n\nThe answer is 3." if with_answer else "")
    row = {"question": QUESTION, "chosen": response, "rejected": response}
    try:
        segmented = RulesSegmenter().segment_response(row, "chosen", LOC)
    except SegmentationError:
        return
    assert [s.name for s in segmented.spans] == ["Rq", "Mt", "Ra"]
    for a, b in zip(segmented.spans, segmented.spans[1:], strict=False):
        assert a.end <= b.start
    for span in segmented.spans:
        body = response[span.start : span.end]
        assert body == body.strip()
    assert segmented.spans[1].end > segmented.spans[1].start and segmented.spans[2].end > segmented.spans[2].start


def test_split_units_falls_back_to_sentences() -> None:
    text = "One. Two!\nThree 3.5? Four"
    assert [text[a:b] for a, b in split_units(text)] == ["One.", "Two!", "Three 3.5?", "Four"]
    paragraphs = "A a.\n\nB b.\n \nC c."
    assert [paragraphs[a:b] for a, b in split_units(paragraphs)] == ["A a.", "B b.", "C c."]


# ---------------------------------------------------------------- failure policies


def _rows() -> list[tuple[RowLocation, dict[str, str]]]:
    good = "<Rq>q</Rq><Mt>m</Mt><Ra>r</Ra>"
    return [
        (RowLocation("f", 1), {"question": "Q1", "chosen": good, "rejected": good}),
        (RowLocation("f", 2), {"question": "Q2", "chosen": good, "rejected": "  no sections here  "}),
        (RowLocation("f", 3), {"question": "Q3", "chosen": good, "rejected": "   "}),
        (RowLocation("f", 4), {"question": "Q4", "chosen": "", "rejected": good}),
    ]


def test_policy_skip_counts_failures_and_empty_responses() -> None:
    stats = DataStats()
    pairs = list(segment_rows(_rows(), TagsSegmenter(on_failure="skip"), stats))
    assert [p.prompt for p in pairs] == ["Q1"]
    assert stats.rows_read == 4
    assert dict(stats.skipped) == {"segmentation_failed": 1, "empty_response": 2}


@pytest.mark.parametrize("fallback", ["Mt", None])
def test_policy_single_segment_keeps_both_responses_whole(fallback: str | None) -> None:
    stats = DataStats()
    pairs = list(segment_rows(_rows(), TagsSegmenter(on_failure="single_segment", fallback_segment=fallback), stats))
    assert [p.prompt for p in pairs] == ["Q1", "Q2"]
    assert stats.single_segment == 1 and dict(stats.skipped) == {"empty_response": 2}
    kept = pairs[1]
    assert kept.meta["single_segment"] is True
    if fallback is None:
        assert kept.chosen.spans == () and kept.rejected.spans == ()
    else:
        assert texts(kept.chosen) == {"Mt": "<Rq>q</Rq><Mt>m</Mt><Ra>r</Ra>"}
        assert texts(kept.rejected) == {"Mt": "no sections here"}


def test_policy_error_raises_with_location() -> None:
    with pytest.raises(SegmentationError, match=r"^f:2: field 'rejected': no Rq, Mt, Ra section"):
        list(segment_rows(_rows(), TagsSegmenter(on_failure="error"), DataStats()))


def test_invalid_options_are_rejected() -> None:
    with pytest.raises(ValueError, match="on_failure"):
        FieldsSegmenter(on_failure="ignore")
    with pytest.raises(ValueError, match="fallback_segment"):
        TagsSegmenter(fallback_segment="Xx")
    with pytest.raises(ValueError, match="exactly 3"):
        RulesSegmenter(["A", "B"], fallback_segment="A")
