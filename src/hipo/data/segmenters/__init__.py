"""Segmenters: raw rows -> SegmentedPair (chosen by Hydra ``segmenter=fields|tags|rules|llm``).

``llm`` lives in :mod:`hipo.data.segmenters.llm` and is not imported here (it needs the ``openai`` SDK).
"""

from hipo.data.segmenters.base import FAILURE_POLICIES, Segmenter, segment_rows
from hipo.data.segmenters.fields import FieldsSegmenter
from hipo.data.segmenters.rules import RulesSegmenter, split_units
from hipo.data.segmenters.tags import DEFAULT_ALIASES, TagsSegmenter

__all__ = [
    "DEFAULT_ALIASES",
    "FAILURE_POLICIES",
    "FieldsSegmenter",
    "RulesSegmenter",
    "Segmenter",
    "TagsSegmenter",
    "segment_rows",
    "split_units",
]
