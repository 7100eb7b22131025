"""Parts of `hipo perf` that need no model: the memory probes, the memory-test batch, the loss presets, the typed
config and the record of a variant's steps. (The perf run end to end: tests/perf/test_perf_command.py.)
"""

from __future__ import annotations

import mmap
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from hipo.app.perf_command import to_perf_config
from hipo.losses.modules import DPOLoss, HiPOLoss, KTOLoss
from hipo.perf.config import PerfConfig, VariantConfig
from hipo.perf.logprob_memory import memory_batch
from hipo.perf.memory import GIB, current_rss_bytes, peak_bytes, peak_rss_bytes, reset_peak
from hipo.perf.suite import _finish
from hipo.perf.variant import StepResult, build_loss, resolve_device

CONF = Path(__file__).resolve().parents[2] / "conf"


def test_rss_probes_see_an_allocation() -> None:
    cpu = torch.device("cpu")
    reset_peak(cpu)  # the high-water mark comes down to the current RSS (where Linux allows)
    before = current_rss_bytes()
    # 64 MiB of fresh anonymous pages, each touched: an allocator's cache (torch's, malloc's) cannot hand back pages
    # that earlier tests left resident, so the RSS must grow by the whole block.
    size = 64 * 1024 * 1024
    with mmap.mmap(-1, size) as block:
        for offset in range(0, size, mmap.PAGESIZE):
            block[offset] = 1
        assert current_rss_bytes() - before > 32 * 1024 * 1024
        assert peak_bytes(cpu) - before > 32 * 1024 * 1024 and peak_rss_bytes() - before > 32 * 1024 * 1024


def test_memory_batch_scores_every_token_but_the_first() -> None:
    batch = memory_batch(rows=4, length=16, vocab_size=100, num_segments=3, seed=1)
    assert batch.input_ids.shape == (4, 16) and int(batch.input_ids.min()) >= 3 and int(batch.input_ids.max()) < 100
    assert (batch.segment_ids[:, 0] == -1).all() and (batch.segment_ids[:, 1:] >= 0).all()
    assert int(batch.segment_ids.max()) <= 3 and bool(batch.attention_mask.all())
    assert torch.equal(batch.sequence_ids[:, 0], torch.arange(4)) and batch.num_sequences == 4
    assert torch.equal(memory_batch(4, 16, 100, seed=1).input_ids, batch.input_ids)  # seeded


def test_loss_presets_and_devices() -> None:
    segments = ["Rq", "Mt", "Ra"]
    assert isinstance(build_loss("dpo", segments), DPOLoss) and isinstance(build_loss("kto", segments), KTOLoss)
    hipo = build_loss("hipo", segments)
    assert isinstance(hipo, HiPOLoss) and hipo.beta == 0.2
    with pytest.raises(ValueError, match="unknown loss 'ipo'"):
        build_loss("ipo", segments)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def _group(group: str, option: str) -> dict:
    """conf/perf/<group>/<option>.yaml as Hydra puts it under ``perf.<group>`` (without its defaults list)."""
    node = OmegaConf.to_container(OmegaConf.load(CONF / "perf" / group / f"{option}.yaml"))
    assert isinstance(node, dict)
    return {key: value for key, value in node.items() if key != "defaults"}


def test_the_perf_node_becomes_a_typed_config() -> None:
    groups = {"shape": _group("shape", "tiny"), "mix": _group("mix", "fixed"), "suite": _group("suite", "smoke")}
    perf = to_perf_config(OmegaConf.create({"perf": {**groups, "steps": 3, "warmup_steps": 2}}))
    assert isinstance(perf, PerfConfig) and (perf.steps, perf.warmup_steps) == (3, 2)
    assert perf.shape.name == "tiny" and perf.suite.variants["hipo-cached"].reference == "cached"
    with pytest.raises(Exception, match="stepz"):
        to_perf_config(OmegaConf.create({**groups, "stepz": 3}))
    with pytest.raises(Exception, match="missing mandatory value: shape"):
        to_perf_config(OmegaConf.create({"steps": 3}))


def test_a_variant_record_drops_the_warm_up_but_keeps_step_0s_loss() -> None:
    runner = SimpleNamespace(
        cfg=SimpleNamespace(warmup_steps=1),
        name="hipo-cached",
        variant=VariantConfig(),
        device=torch.device("cpu"),
        setup_s=1.5,
        reference_setup_s=0.5,
        trainable=123,
    )
    steps = [StepResult(9.0, 10, 0.69, 0), StepResult(1.0, 12, 0.6, 1), StepResult(2.0, 14, 0.5, 0)]
    record = _finish(runner, steps, "process VmHWM", baseline=GIB)  # type: ignore[arg-type]
    assert (record.step_s, record.useful_tokens, record.losses, record.batch_index) == (
        [1.0, 2.0],
        [12, 14],
        [0.6, 0.5],
        [1, 0],
    )
    assert record.extra["step0_loss"] == 0.69 and record.baseline_memory_gib == 1.0
    assert (
        record.settings == asdict(VariantConfig())
        and record.variant == "hipo-cached"
        and record.trainable_parameters == 123
    )
