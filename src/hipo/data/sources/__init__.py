"""Row sources (Hydra ``data=synthetic|jsonl|math_stackexchange``): raw rows with their RowLocation."""

from hipo.data.sources.base import RowSource, file_digest
from hipo.data.sources.hub import MATH_STACK_EXCHANGE, HubSource
from hipo.data.sources.jsonl import JsonlSource
from hipo.data.sources.synthetic import SyntheticSource

MathStackExchangeSource = HubSource

__all__ = [
    "MATH_STACK_EXCHANGE",
    "HubSource",
    "JsonlSource",
    "MathStackExchangeSource",
    "RowSource",
    "SyntheticSource",
    "file_digest",
]
