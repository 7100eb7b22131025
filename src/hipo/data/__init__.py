"""Segmented preference data: schema, segmenters, sources, tokenization, collation, datamodule."""

from hipo.data.collate import PairCollator, TokenizedExample, UnpairedCollator, collate_sequences, pack_rows, unpair
from hipo.data.data_stats import DataStats
from hipo.data.datamodule import PreferenceDataModule
from hipo.data.describe import describe_segmentation
from hipo.data.prepare import PreparedData, prepare_data
from hipo.data.row_errors import DataError, RowLocation, SegmentationError
from hipo.data.samplers import DistributedLengthGroupedSampler
from hipo.data.tokenize import PreferenceTokenizer, TokenizedPair, TokenizedSequence

__all__ = [
    "DataError",
    "DataStats",
    "DistributedLengthGroupedSampler",
    "PairCollator",
    "PreferenceDataModule",
    "PreferenceTokenizer",
    "PreparedData",
    "RowLocation",
    "SegmentationError",
    "TokenizedExample",
    "TokenizedPair",
    "TokenizedSequence",
    "UnpairedCollator",
    "collate_sequences",
    "describe_segmentation",
    "pack_rows",
    "prepare_data",
    "unpair",
]
