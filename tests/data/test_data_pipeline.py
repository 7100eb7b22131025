"""prepare_data + its on-disk cache, the PreferenceDataModule, and describe_segmentation."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from hipo.data.batch import TokenBatch
from hipo.data.datamodule import PreferenceDataModule
from hipo.data.describe import describe_segmentation, mark_segments
from hipo.data.prepare import prepare_data, split_by_prompt
from hipo.data.row_errors import DataError
from hipo.data.segmented import SegmentedPair, SegmentedResponse, Span
from hipo.data.segmenters import FieldsSegmenter, TagsSegmenter
from hipo.data.sources import JsonlSource, SyntheticSource
from hipo.data.tokenize import PreferenceTokenizer


class CountingTokenizer(PreferenceTokenizer):
    """Counts how many responses it sends to the tokenizer."""

    calls = 0

    def _tokenize_batch(self, rendered: Any, responses: Any) -> Any:
        CountingTokenizer.calls += len(responses)
        return super()._tokenize_batch(rendered, responses)


def _prepare(tokenizer: Any, root: Path, source: Any = None, **options: Any) -> Any:
    pt = CountingTokenizer(tokenizer, max_length=options.pop("max_length", 256))
    return prepare_data(source or SyntheticSource(40, seed=1), FieldsSegmenter(), pt, cache_root=root, **options)


@pytest.mark.slow  # prepares the data several times
def test_cache_is_reused_and_invalidated(smollm2_tokenizer: Any, tmp_path: Path) -> None:
    CountingTokenizer.calls = 0
    first = _prepare(smollm2_tokenizer, tmp_path)
    assert not first.from_cache and CountingTokenizer.calls == 80  # 40 pairs, 2 responses each
    assert [p.name for p in tmp_path.iterdir()] == [f"{first.fingerprint}.npz"]  # no temporary files left

    second = _prepare(smollm2_tokenizer, tmp_path)
    assert second.from_cache and CountingTokenizer.calls == 80  # nothing re-tokenized
    assert second.stats == first.stats and second.val_pairs == first.val_pairs
    for a, b in zip(first.train + first.val, second.train + second.val, strict=True):
        assert a.example_id == b.example_id
        for x, y in ((a.chosen, b.chosen), (a.rejected, b.rejected)):
            assert x.input_ids.tolist() == y.input_ids.tolist() and x.segment_ids.tolist() == y.segment_ids.tolist()
            assert x.prompt_length == y.prompt_length

    changed_template = copy.deepcopy(smollm2_tokenizer)
    changed_template.chat_template = changed_template.chat_template.replace("helpful", "careful")
    variants = [
        _prepare(smollm2_tokenizer, tmp_path, max_length=200),
        _prepare(smollm2_tokenizer, tmp_path, source=SyntheticSource(40, seed=2)),
        _prepare(changed_template, tmp_path),
        _prepare(smollm2_tokenizer, tmp_path, val_fraction=0.3),
    ]
    assert not any(v.from_cache for v in variants)
    assert len({first.fingerprint, *(v.fingerprint for v in variants)}) == 5


def test_cache_tracks_jsonl_content(smollm2_tokenizer: Any, tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    row = {"question": "Q", "chosen": "<Rq>a</Rq><Mt>b</Mt><Ra>c</Ra>", "rejected": "<Rq>a</Rq><Mt>x</Mt><Ra>c</Ra>"}
    path.write_text(json.dumps(row) + "\n")
    pt = PreferenceTokenizer(smollm2_tokenizer)
    first = prepare_data(JsonlSource(path), TagsSegmenter(), pt, val_fraction=0.0, cache_root=tmp_path / "c")
    path.write_text(json.dumps({**row, "question": "Q changed"}) + "\n")
    second = prepare_data(JsonlSource(path), TagsSegmenter(), pt, val_fraction=0.0, cache_root=tmp_path / "c")
    assert not second.from_cache and second.fingerprint != first.fingerprint
    assert second.train[0].chosen.input_ids.tolist() != first.train[0].chosen.input_ids.tolist()


def test_bad_input_fails_before_anything_is_cached(smollm2_tokenizer: Any, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "q", "chosen": "<Rq>a</Rq><Mt>b</Mt><Ra>c</Ra>", "rejected": "x"}\n{oops\n')
    module = PreferenceDataModule(JsonlSource(path), TagsSegmenter(), smollm2_tokenizer, cache_root=tmp_path / "cache")
    with pytest.raises(DataError, match=r"bad.jsonl:2: malformed JSON"):
        module.setup("fit")
    assert not (tmp_path / "cache").exists()


def test_split_by_prompt_keeps_prompts_together() -> None:
    response = SegmentedResponse("a", (Span("Mt", 0, 1),))
    pairs = [SegmentedPair(f"prompt {i % 50}", response, response) for i in range(200)]
    train, val = split_by_prompt(pairs, 0.2, seed=0)
    assert len(train) + len(val) == 200 and 0 < len(val) < 80
    assert not {p.prompt for p in train} & {p.prompt for p in val}
    assert split_by_prompt(pairs, 0.2, seed=0) == (train, val) != split_by_prompt(pairs, 0.2, seed=1)


# ---------------------------------------------------------------- data module


def _module(tokenizer: Any, tmp_path: Path, **options: Any) -> PreferenceDataModule:
    defaults: dict[str, Any] = {
        "source": SyntheticSource(48, seed=3),
        "segmenter": FieldsSegmenter(),
        "tokenizer": tokenizer,
        "batch_size": 4,
        "eval_batch_size": 5,
        "val_source": SyntheticSource(10, seed=3, split="validation"),
        "cache_root": tmp_path,
    }
    module = PreferenceDataModule(**{**defaults, **options})
    module.setup("fit")
    return module


def test_datamodule_padded_batches_and_validation_pairs(smollm2_tokenizer: Any, tmp_path: Path) -> None:
    module = _module(smollm2_tokenizer, tmp_path)
    assert module.stats.as_dict() == {
        "rows_read": 58,
        "pairs_kept": 58,
        "single_segment": 0,
        "truncated": 0,
        "dropped": 0,
        "train_pairs": 48,
        "val_pairs": 10,
    }
    batches = list(module.train_dataloader())
    assert len(batches) == 12 and all(isinstance(b, TokenBatch) for b in batches)
    assert sorted(i for b in batches for i in b.example_ids.tolist()) == list(range(48))
    assert all(b.input_ids.shape[0] == 8 and b.num_sequences == 8 for b in batches)
    val_batches = list(module.val_dataloader())
    assert [b.example_ids.tolist() for b in val_batches] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    # The validation pairs' text is what the validation batches hold.
    first = val_batches[0]
    for i, pair in enumerate(module.val_pairs[:5]):
        row = first.input_ids[i][first.segment_ids[i] >= 0]
        assert smollm2_tokenizer.decode(row) == pair.chosen.text + "<|im_end|>"
        row = first.input_ids[5 + i][first.segment_ids[5 + i] >= 0]
        assert smollm2_tokenizer.decode(row) == pair.rejected.text + "<|im_end|>"
        assert pair.meta["error_segment"] in {"Rq", "Mt", "Ra"}


def test_datamodule_packed_and_unpaired(smollm2_tokenizer: Any, tmp_path: Path) -> None:
    packed = _module(smollm2_tokenizer, tmp_path, packed=True, pack_length=512)
    batch = next(iter(packed.train_dataloader()))
    assert batch.packed and batch.num_sequences == 8 and batch.input_ids.shape[1] <= 512
    assert batch.input_ids.shape[0] < 8  # several ~190-token sequences share a row
    unpaired = _module(smollm2_tokenizer, tmp_path, paired=False, batch_size=6)
    batches = list(unpaired.train_dataloader())
    assert sum(len(b.example_ids) for b in batches) == 96
    assert sorted(i for b in batches for i in b.example_ids.tolist()) == list(range(96))
    for b in batches:
        assert b.num_kl_sequences == len(b.example_ids) and b.num_sequences == 2 * len(b.example_ids)
        assert b.desirable is not None and (b.desirable == (b.example_ids % 2 == 0)).all()
    assert any(
        b.desirable is not None and not (b.example_ids[::2] // 2 == b.example_ids[1::2] // 2).all() for b in batches
    )  # shuffled: batches are not made of aligned pairs


def test_datamodule_requires_setup_and_matching_segments(smollm2_tokenizer: Any, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="differ from the segmenter"):
        PreferenceDataModule(SyntheticSource(4), FieldsSegmenter(), smollm2_tokenizer, segments=["Rq", "Ra"])
    module = PreferenceDataModule(SyntheticSource(4), FieldsSegmenter(), smollm2_tokenizer, cache_root=tmp_path)
    with pytest.raises(RuntimeError, match="setup"):
        _ = module.stats


@pytest.mark.slow  # loads the tokenizer from its folder
def test_datamodule_loads_a_named_tokenizer_as_the_model_loader_does(smollm2_tokenizer: Any, tmp_path: Path) -> None:
    """A model name instead of a tokenizer: loaded by hipo.models.loading.load_tokenizer (pad token, right padding)."""
    module = PreferenceDataModule(SyntheticSource(4), FieldsSegmenter(), "embedded:smollm2-135m", cache_root=tmp_path)
    tokenizer = module.tokenizer
    assert tokenizer.get_vocab() == smollm2_tokenizer.get_vocab()
    assert tokenizer.pad_token_id is not None and tokenizer.padding_side == "right"


# ---------------------------------------------------------------- describe


def test_describe_segmentation(smollm2_tokenizer: Any) -> None:
    response = SegmentedResponse("Hi.\n\nA b\n\nC", (Span("Rq", 0, 3), Span("Mt", 5, 8), Span("Ra", 10, 11)))
    assert mark_segments(response) == "⟦Rq⟧Hi.⟦/Rq⟧\n\n⟦Mt⟧A b⟦/Mt⟧\n\n⟦Ra⟧C⟦/Ra⟧"
    pair = SegmentedPair("Say hi", response, response, {"row": 3})
    text = describe_segmentation([pair, pair], n=1, tokenizer=smollm2_tokenizer)
    assert text.count("=== pair") == 1 and "(row=3)" in text and "⟦Mt⟧A b⟦/Mt⟧" in text
    # Token counts as in test_hand_example: Rq 2 ("Hi", "."), Mt 2, Ra 1, outside 5 (4 newlines + <|im_end|>).
    assert "tokens: Rq=2, Mt=2, Ra=1, outside=5" in text
