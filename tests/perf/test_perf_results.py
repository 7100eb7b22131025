"""Perf arithmetic: throughput from per-batch medians, ratios and their verdicts, shapes' parameter counts."""

from __future__ import annotations

import pytest
import torch

from hipo.perf.config import RatioConfig, ShapeConfig
from hipo.perf.results import VariantResult, compute_ratios
from hipo.perf.shapes import build_shape_model, parameter_count


def result(step_s: list[float], tokens: list[int], batches: list[int]) -> VariantResult:
    return VariantResult("v", {}, step_s, tokens, [0.0] * len(step_s), batches, 1.0, 0.5, "m", 0.0, 0.0, 1, "cpu")


def test_throughput_uses_per_batch_medians() -> None:
    """Batch 0: steps 1 s and 3 s (median 2), 10 tokens; batch 1: steps 2 s, 4 s, 9 s (median 4), 20 tokens.
    Throughput = (10 + 20) / (2 + 4) = 5 tok/s; median step = median(1, 2, 3, 4, 9) = 3 s."""
    r = result([1.0, 2.0, 3.0, 4.0, 9.0], [10, 20, 10, 20, 20], [0, 1, 0, 1, 1])
    assert r.useful_tokens_per_s == pytest.approx(5.0)
    assert r.median_step_s == pytest.approx(3.0)
    record = r.record()
    assert list(record)[:4] == ["variant", "useful_tokens_per_s", "median_step_s", "peak_memory_gib"]


def test_ratios_and_verdicts() -> None:
    records = {
        "a": {"median_step_s": 1.0, "useful_tokens_per_s": 90.0},
        "b": {"median_step_s": 2.0, "useful_tokens_per_s": 50.0},
    }
    ratios = [
        RatioConfig("speed", "a", "b", "median_step_s", 0.5, "le"),  # 0.5 <= 0.5: met
        RatioConfig("tps", "a", "b", "useful_tokens_per_s", 1.8, "ge"),  # 1.8 >= 1.8: met
        RatioConfig("tps2", "b", "a", "useful_tokens_per_s", 1.0, "ge"),  # 0.556: not met
        RatioConfig("plain", "b", "a"),  # 2.0, no target
    ]
    out = compute_ratios(records, ratios)
    assert [q["value"] for q in out] == pytest.approx([0.5, 1.8, 50 / 90, 2.0])
    assert [q["met"] for q in out] == [True, True, False, None]
    with pytest.raises(ValueError, match="'c', not a variant"):
        compute_ratios(records, [RatioConfig("x", "c", "a")])


@pytest.mark.parametrize("architecture,tied", [("llama", True), ("qwen2", False)])
def test_parameter_count_matches_the_built_model(architecture: str, tied: bool) -> None:
    shape = ShapeConfig("s", architecture, 1000, 48, 96, 3, 6, 2, tied)
    model = build_shape_model(shape, torch.float32)
    assert parameter_count(shape) == sum(p.numel() for p in model.parameters())
    if architecture == "qwen2":
        assert model.model.layers[0].self_attn.q_proj.bias is not None


def test_published_parameter_counts() -> None:
    """SmolLM2-135M: 134,515,008; Qwen2.5-7B: 7,615,616,512 (their model cards' totals)."""
    smol = ShapeConfig("s", "llama", 49152, 576, 1536, 30, 9, 3, True)
    qwen = ShapeConfig("q", "qwen2", 152064, 3584, 18944, 28, 28, 4, False)
    assert parameter_count(smol) == 134_515_008
    assert parameter_count(qwen) == 7_615_616_512


def test_random_weights_are_built_in_the_requested_dtype() -> None:
    shape = ShapeConfig("s", "llama", 1000, 48, 96, 2, 6, 2, True)
    model = build_shape_model(shape, torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert torch.get_default_dtype() == torch.float32  # restored
