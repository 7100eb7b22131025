"""The on-disk reference cache: equals the live reference, is reused, and is invalidated when anything changes
(weights, the reference adapter, model config, attention implementation, precision, software versions...).

The live reference here is a naive, independent implementation: every sequence is run ALONE through the model
(no padding, no packing), full-vocabulary fp32 log-softmax, token t scored as log p(x_t | x_<t) and summed into
its segment column (0..S-1) and into the whole-response column S when its segment id is >= 0.
"""

from __future__ import annotations

import copy
import importlib
import logging
from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM

from hipo.data.batch import TokenBatch
from hipo.data.collate import UnpairedCollator, collate_sequences, unpair
from hipo.data.datamodule import PreferenceDataModule
from hipo.data.segmenters.fields import FieldsSegmenter
from hipo.data.sources.synthetic import SyntheticSource
from hipo.losses.types import SegmentLogps
from hipo.models import logprobs
from hipo.models.lora import (
    REFERENCE_ADAPTER,
    TRAINABLE_ADAPTER,
    adapter_parameters,
    load_adapter,
    load_reference_adapter,
    save_adapter,
)
from hipo.models.tiny import build_tiny_model
from hipo.training.ref_cache import build_cached_reference, load_or_compute, pair_sequences, sequence_signatures
from hipo.training.ref_cache_key import adapter_digest, cache_key, reference_fingerprint_parts


class NaiveReference:
    """Scores each sequence alone with a full fp32 log-softmax; counts its calls and scored sequences."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model, self.calls, self.sequences = model, 0, 0

    @torch.no_grad()
    def __call__(self, batch: TokenBatch) -> SegmentLogps:
        self.calls += 1
        self.sequences += batch.num_sequences
        S = batch.num_segments
        sums = torch.zeros(batch.num_sequences, S + 1, dtype=torch.float64)
        counts = torch.zeros(batch.num_sequences, S + 1, dtype=torch.long)
        for n in range(batch.num_sequences):
            mask = batch.sequence_ids == n
            ids, segments = batch.input_ids[mask], batch.segment_ids[mask]
            logp = torch.log_softmax(self.model(input_ids=ids[None]).logits[0].double(), dim=-1)
            token_logp = logp[:-1].gather(1, ids[1:, None])[:, 0]  # log p(x_t | x_<t), t = 1..L-1
            target_segments = segments[1:]
            for k in range(S):
                sums[n, k] = token_logp[target_segments == k].sum()
                counts[n, k] = int((target_segments == k).sum())
            sums[n, S] = token_logp[target_segments >= 0].sum()
            counts[n, S] = int((target_segments >= 0).sum())
        return SegmentLogps(sums.float(), counts)


class TokenSumReference:
    """A cheap deterministic stand-in (sum of token ids per segment) for tests about caching, not values."""

    def __init__(self) -> None:
        self.calls, self.sequences = 0, 0

    def __call__(self, batch: TokenBatch) -> SegmentLogps:
        self.calls += 1
        self.sequences += batch.num_sequences
        S = batch.num_segments
        sums = torch.zeros(batch.num_sequences, S + 1)
        counts = torch.zeros(batch.num_sequences, S + 1, dtype=torch.long)
        for n in range(batch.num_sequences):
            mask = batch.sequence_ids == n
            ids, segments = batch.input_ids[mask].float(), batch.segment_ids[mask]
            for k in range(S):
                sums[n, k], counts[n, k] = ids[segments == k].sum(), (segments == k).sum()
            sums[n, S], counts[n, S] = ids[segments >= 0].sum(), (segments >= 0).sum()
        return SegmentLogps(sums, counts)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return build_tiny_model(seed=0)


def make_datamodule(tokenizer, tmp: Path, num_pairs: int = 6, seed: int = 0, **kwargs) -> PreferenceDataModule:
    dm = PreferenceDataModule(
        SyntheticSource(num_pairs=num_pairs, seed=seed),
        FieldsSegmenter(),
        tokenizer,
        max_length=200,
        batch_size=3,
        eval_batch_size=4,
        val_fraction=0.25,
        cache_root=tmp / "data",
        **kwargs,
    )
    dm.setup("fit")
    return dm


def parts_for(model, tokenizer, dm, adapter: str | None = None, precision: str = "32-true") -> dict:
    return reference_fingerprint_parts(
        model, tokenizer, dm.prepared.fingerprint, "float32", precision=precision, reference_adapter=adapter
    )


def test_signatures_ignore_layout_and_see_content(smollm2_tokenizer, tmp_path: Path) -> None:
    dm = make_datamodule(smollm2_tokenizer, tmp_path)
    sequences = pair_sequences(dm.prepared.train)
    padded = collate_sequences(sequences, range(len(sequences)), 2, 3, packed=False)
    packed = collate_sequences(sequences, range(len(sequences)), 2, 3, packed=True, pack_length=1024)
    assert packed.input_ids.shape[0] < padded.input_ids.shape[0]  # really packed: several sequences per row
    assert torch.equal(sequence_signatures(padded), sequence_signatures(packed))
    assert len(set(sequence_signatures(padded).tolist())) == len(sequences)  # distinct sequences, distinct hashes
    changed = copy.deepcopy(sequences[0])
    changed.segment_ids[-2] = (changed.segment_ids[-2] + 1) % 3  # same tokens, one segment label moved
    one = collate_sequences([sequences[0], changed], [0, 1], 2, 3)
    assert sequence_signatures(one)[0] != sequence_signatures(one)[1]


@pytest.mark.slow  # the naive reference scores every sequence alone
@pytest.mark.parametrize("packed", [False, True])
def test_cached_equals_live_and_is_reused(smollm2_tokenizer, model, tmp_path: Path, packed: bool) -> None:
    dm = make_datamodule(smollm2_tokenizer, tmp_path, packed=packed, pack_length=512)
    live = NaiveReference(model)
    cached = build_cached_reference(live, dm, parts_for(model, smollm2_tokenizer, dm), cache_root=tmp_path / "ref")
    total = 2 * (len(dm.prepared.train) + len(dm.prepared.val))
    assert live.sequences == total  # one pass over every train and validation sequence
    for batch in [*dm.train_dataloader(), *dm.val_dataloader()]:
        got, want = cached(batch), NaiveReference(model)(batch)
        torch.testing.assert_close(got.sums, want.sums, atol=1e-5, rtol=1e-5)
        assert torch.equal(got.counts, want.counts)
    assert cached.live_rows == 0 and cached.hits == total

    second = NaiveReference(model)
    again = build_cached_reference(second, dm, parts_for(model, smollm2_tokenizer, dm), cache_root=tmp_path / "ref")
    assert second.calls == 0  # read from disk: no reference pass
    assert torch.equal(torch.from_numpy(again.table.sums), torch.from_numpy(cached.table.sums))


@pytest.mark.slow  # the naive reference scores every sequence alone
def test_kto_kl_rows_are_scored_live(smollm2_tokenizer, model, tmp_path: Path) -> None:
    dm = make_datamodule(smollm2_tokenizer, tmp_path)
    live = NaiveReference(model)
    cached = build_cached_reference(live, dm, parts_for(model, smollm2_tokenizer, dm), cache_root=tmp_path / "ref")
    examples = unpair(dm.prepared.train)[0:8:2]  # four chosen responses of four prompts: KL rows mismatched
    batch = UnpairedCollator(pad_id=2, num_segments=3, packed=True, pack_length=512)(examples)
    live.calls = 0
    got, want = cached(batch), NaiveReference(model)(batch)
    torch.testing.assert_close(got.sums, want.sums, atol=1e-5, rtol=1e-5)
    assert torch.equal(got.counts, want.counts)
    assert cached.live_rows == 4 and live.calls == 1  # only the 4 mismatched KL sequences, in one live call


def _key_and_recompute(live, sequences, parts, root) -> tuple[str, bool]:
    _, from_disk, _ = load_or_compute(live, sequences, parts, 3, 2, cache_root=root)
    return cache_key(parts, 3), from_disk


@pytest.mark.slow  # builds several tiny models and data modules
def test_fingerprint_changes_with_tokenizer_data_adapter_and_weights(smollm2_tokenizer, model, tmp_path) -> None:
    """Each change gives a new key, and that key misses the cache (the reference pass runs again)."""
    dm = make_datamodule(smollm2_tokenizer, tmp_path)
    sequences = pair_sequences(dm.prepared.train)
    root = tmp_path / "ref"
    live = TokenSumReference()
    base = parts_for(model, smollm2_tokenizer, dm)
    key, from_disk = _key_and_recompute(live, sequences, base, root)
    assert not from_disk and _key_and_recompute(live, sequences, base, root) == (key, True)

    tokenizer = copy.deepcopy(smollm2_tokenizer)
    tokenizer.chat_template = tokenizer.chat_template.replace("<|im_start|>", "<|im_start|> ")
    other_dm = make_datamodule(smollm2_tokenizer, tmp_path, num_pairs=9)  # different data
    lora_model = copy.deepcopy(model)
    from peft import LoraConfig, get_peft_model

    adapted = get_peft_model(lora_model, LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    adapted_other = copy.deepcopy(adapted)
    with torch.no_grad():
        next(p for n, p in adapted_other.named_parameters() if "lora_B" in n).add_(0.5)
    heavier = copy.deepcopy(model)
    with torch.no_grad():
        heavier.model.norm.weight.mul_(1.01)
    variants = {
        "tokenizer": parts_for(model, tokenizer, dm),
        "data": parts_for(model, smollm2_tokenizer, other_dm),
        "weights": parts_for(heavier, smollm2_tokenizer, dm),
        "dtype": {**base, "dtype": "bfloat16"},
    }
    adapter_a = parts_for(adapted, smollm2_tokenizer, dm, adapter="default")
    adapter_b = parts_for(adapted_other, smollm2_tokenizer, dm, adapter="default")
    assert adapter_a["weights"] == adapter_b["weights"] and adapter_a["adapter"] != adapter_b["adapter"]
    variants["adapter"] = adapter_b
    keys = {key}
    _key_and_recompute(live, sequences, adapter_a, root)
    for name, parts in variants.items():
        calls = live.calls
        new_key, from_disk = _key_and_recompute(live, sequences, parts, root)
        assert new_key not in keys, name
        assert not from_disk and live.calls > calls, name
        keys.add(new_key)
    # A plain LoRA run's reference disables the adapter: its per-seed init must NOT split the cache.
    no_adapter_a = parts_for(adapted, smollm2_tokenizer, dm, adapter=None)
    no_adapter_b = parts_for(adapted_other, smollm2_tokenizer, dm, adapter=None)
    assert cache_key(no_adapter_a, 3) == cache_key(no_adapter_b, 3)


def with_rope_theta(model: torch.nn.Module, theta: float) -> LlamaForCausalLM:
    """The same weights under another ``rope_theta`` (rotary frequencies are buffers outside the state dict)."""
    config = copy.deepcopy(model.config)
    config.rope_parameters = {**config.rope_parameters, "rope_theta": theta}
    other = LlamaForCausalLM(config)
    other.load_state_dict(model.state_dict())
    return other.eval()


@pytest.mark.slow  # builds several tiny models and data modules
def test_fingerprint_covers_config_attention_precision_and_software(
    smollm2_tokenizer, model, tmp_path, monkeypatch
) -> None:
    """Same weights, tokenizer and data: another rope_theta, attention implementation, autocast precision, log-prob
    code version or library version each give a new key and a miss; nothing changed gives the same key and a hit."""
    dm = make_datamodule(smollm2_tokenizer, tmp_path)
    sequences = pair_sequences(dm.prepared.train)
    root = tmp_path / "ref"
    live = TokenSumReference()
    base = parts_for(model, smollm2_tokenizer, dm)
    key, from_disk = _key_and_recompute(live, sequences, base, root)
    assert not from_disk
    same = parts_for(build_tiny_model(seed=0), smollm2_tokenizer, dm)  # rebuilt, nothing changed
    assert _key_and_recompute(live, sequences, same, root) == (key, True)

    rope = with_rope_theta(model, 500000.0)
    assert parts_for(rope, smollm2_tokenizer, dm)["weights"] == base["weights"]
    batch = next(iter(dm.val_dataloader()))  # a hit on the old key would hand this run wrong values:
    assert not torch.allclose(NaiveReference(rope)(batch).sums, NaiveReference(model)(batch).sums, atol=1e-3)
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    variants = {
        "rope_theta": parts_for(rope, smollm2_tokenizer, dm),
        "attention": parts_for(eager, smollm2_tokenizer, dm),
        "precision": parts_for(model, smollm2_tokenizer, dm, precision="bf16-mixed"),
    }
    patches = {"logprobs_version": (logprobs, "LOGPROBS_VERSION", logprobs.LOGPROBS_VERSION + 1)}
    # importing peft swaps sys.modules["transformers"] for a new lazy module: patch the one imported now
    patches["transformers"] = (importlib.import_module("transformers"), "__version__", "0.0.1")
    patches["torch"] = (torch, "__version__", "0.0.1")
    for name, (owner, attribute, value) in patches.items():
        with monkeypatch.context() as patch:
            patch.setattr(owner, attribute, value)
            variants[name] = parts_for(model, smollm2_tokenizer, dm)
    keys = {key}
    for name, parts in variants.items():
        calls = live.calls
        new_key, from_disk = _key_and_recompute(live, sequences, parts, root)
        assert new_key not in keys, name
        assert not from_disk and live.calls > calls, name
        keys.add(new_key)


@pytest.mark.slow  # builds and trains LoRA adapters
def test_adapter_part_covers_exactly_the_reference_adapter(smollm2_tokenizer, model, tmp_path) -> None:
    """Continued training holds two adapters: training the trainable one must not change the key; another starting
    (reference) adapter, or the same tensors under another lora_alpha, must."""
    from peft import LoraConfig, get_peft_model

    dm = make_datamodule(smollm2_tokenizer, tmp_path)
    config = LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    folder = save_adapter(get_peft_model(copy.deepcopy(model), config), tmp_path / "adapter")
    policy = load_adapter(copy.deepcopy(model), folder, trainable=True)
    load_reference_adapter(policy, folder)

    def key() -> str:
        return cache_key(parts_for(policy, smollm2_tokenizer, dm, adapter=REFERENCE_ADAPTER), 3)

    start = key()
    assert parts_for(policy, smollm2_tokenizer, dm, adapter=REFERENCE_ADAPTER)["adapter"] == adapter_digest(
        policy, REFERENCE_ADAPTER
    )
    assert cache_key(parts_for(policy, smollm2_tokenizer, dm), 3) != start
    with torch.no_grad():
        for _, parameter in adapter_parameters(policy, TRAINABLE_ADAPTER):
            parameter.add_(0.5)  # the policy trained
    assert key() == start
    policy.peft_config[REFERENCE_ADAPTER].lora_alpha *= 2
    assert key() != start
    policy.peft_config[REFERENCE_ADAPTER].lora_alpha //= 2
    assert key() == start
    with torch.no_grad():
        adapter_parameters(policy, REFERENCE_ADAPTER)[0][1].add_(0.5)
    assert key() != start
    with pytest.raises(ValueError, match="no tensors of an adapter named 'missing'"):
        adapter_digest(policy, "missing")


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "wrong_key"])
def test_damaged_cache_is_detected_and_recomputed(smollm2_tokenizer, model, tmp_path, caplog, damage: str) -> None:
    dm = make_datamodule(smollm2_tokenizer, tmp_path)
    sequences = pair_sequences(dm.prepared.train)
    parts = parts_for(model, smollm2_tokenizer, dm)
    live = TokenSumReference()
    table, _, path = load_or_compute(live, sequences, parts, 3, 2, cache_root=tmp_path / "ref")
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip_byte":
        index = data.index(table.sums.tobytes()[:16]) + 5  # inside the stored sums array
        path.write_bytes(data[:index] + bytes([data[index] ^ 0xFF]) + data[index + 1 :])
    else:  # a valid file of another fingerprint copied under this name
        other, _, other_path = load_or_compute(live, sequences, {**parts, "dtype": "x"}, 3, 2, cache_root=path.parent)
        path.write_bytes(other_path.read_bytes())
    calls = live.calls
    with caplog.at_level(logging.WARNING, logger="hipo.training.ref_cache"):
        again, from_disk, _ = load_or_compute(live, sequences, parts, 3, 2, cache_root=tmp_path / "ref")
    assert not from_disk and live.calls > calls
    assert "recomputing" in caplog.text
    assert torch.equal(torch.from_numpy(again.sums), torch.from_numpy(table.sums))
    _, from_disk, _ = load_or_compute(live, sequences, parts, 3, 2, cache_root=tmp_path / "ref")
    assert from_disk  # the rewritten file is valid
