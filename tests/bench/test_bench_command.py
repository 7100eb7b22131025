"""`hipo bench` end to end in smoke mode (tiny shape, 1 warm-up + 2 steps), its configs, and its steps' realism."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from hipo.app.bench import bench_command, to_bench_config
from hipo.bench.config import LogprobMemoryConfig, register_bench_configs
from hipo.bench.logprob_memory import measure_once
from hipo.bench.variant import VariantRunner
from hipo.models.reference import build_reference

pytestmark = pytest.mark.slow  # bench compositions, smoke runs, training steps and memory measurements

CONF = Path(__file__).resolve().parents[2] / "conf"
SMALL = [
    "bench/shape=tiny",
    "bench.pairs_per_step=2",
    "bench.num_batches=2",
    "bench.warmup_steps=1",
    "bench.steps=2",
    "bench.threads=1",
    "bench.mix.response_length=24",
    "bench.mix.response_max=48",
    "bench.mix.prompt_max=24",
]
REQUIRED = ("variant", "useful_tokens_per_s", "median_step_s", "peak_memory_gib")


def compose_bench(overrides: list[str]):
    register_bench_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("bench", overrides=overrides)


@pytest.mark.parametrize("isolation", ["inline", "process"])
def test_smoke_run_writes_valid_json(tmp_path: Path, isolation: str, capsys) -> None:
    out = tmp_path / "bench.json"
    # process isolation: one worker (spawning a Python process costs seconds); inline: the whole smoke suite
    suite = [] if isolation == "inline" else ["~bench.suite.variants.hipo-padded", "~bench.suite.variants.hipo"]
    suite += [] if isolation == "inline" else ["bench.suite.ratios=[]", "bench.suite.same_process_losses=[]"]
    cfg = compose_bench([*SMALL, f"bench.isolation={isolation}", f"bench.out={out}", *suite])
    bench_command(cfg)
    payload = json.loads(out.read_text())
    names = [r["variant"] for r in payload["records"]]
    inline_names = ["hipo", "hipo-cached", "hipo-padded", "same/dpo", "same/hipo"]
    assert names == (inline_names if isolation == "inline" else ["hipo-cached"])
    for record in payload["records"]:
        assert all(key in record for key in REQUIRED)
        assert record["useful_tokens_per_s"] > 0 and record["median_step_s"] > 0 and record["peak_memory_gib"] > 0
        assert len(record["step_s"]) == 2 and all(torch.isfinite(torch.tensor(record["loss"])))
    by_name = {r["variant"]: r for r in payload["records"]}
    assert by_name["hipo-cached"]["reference_setup_s"] > 0
    assert by_name["hipo-cached"]["memory_method"].startswith("process" if isolation == "process" else "process VmHWM")
    for ratio in payload["ratios"]:
        expected = by_name[ratio["numerator"]][ratio["metric"]] / by_name[ratio["denominator"]][ratio["metric"]]
        assert ratio["value"] == pytest.approx(expected)
    assert "ratios (same run)" in capsys.readouterr().out or not payload["ratios"]


@pytest.mark.parametrize("group", ["shape", "mix", "suite"])
def test_every_bench_config_composes(group: str) -> None:
    for path in sorted((CONF / "bench" / group).glob("*.yaml")):
        bench = to_bench_config(compose_bench([f"bench/{group}={path.stem}"]))
        assert getattr(bench, group).name == path.stem
        if group == "suite":
            names = set(bench.suite.variants) | {f"same/{loss}" for loss in bench.suite.same_process_losses}
            assert all(r.numerator in names and r.denominator in names for r in bench.suite.ratios), path


def test_unknown_key_is_rejected() -> None:
    with pytest.raises(Exception, match="pairs_per_stepp"):
        compose_bench(["bench.pairs_per_stepp=3"])
    with pytest.raises(Exception, match="steps"):
        to_bench_config(compose_bench(["bench.steps=many"]))


def test_steps_are_real_training_steps_and_cached_equals_live() -> None:
    bench = to_bench_config(compose_bench(SMALL))
    variant = bench.suite.variants["hipo-cached"]
    runner = VariantRunner(bench, "hipo-cached", variant)
    live = build_reference(runner.module.policy)
    for batch in runner.batches:  # before any step the cached rows are the live reference's
        cached, fresh = runner.reference(batch), live.segment_logps(batch, chunk_size=bench.logprob_chunk_size)
        torch.testing.assert_close(cached.sums, fresh.sums, atol=1e-4, rtol=1e-5)
        assert torch.equal(cached.counts.long(), fresh.counts.long())
    trainable = {n: p.detach().clone() for n, p in runner.module.named_parameters() if p.requires_grad}
    frozen = {n: p.detach().clone() for n, p in runner.module.named_parameters() if not p.requires_grad}
    runner.step()
    runner.step()
    params = dict(runner.module.named_parameters())
    assert any(not torch.equal(params[n], v) for n, v in trainable.items() if "lora_B" in n)  # B moved off zero
    assert all(torch.equal(params[n], v) for n, v in frozen.items())


def test_chunked_logprobs_use_at_most_half_the_naive_memory() -> None:
    """Tiny shape, 4 x 256 tokens: the naive path holds [4, 256, 49152] fp32 logits (192 MiB) and their
    log-softmax; the chunked path at most a [256, 49152] chunk (48 MiB) at a time."""
    bench = to_bench_config(compose_bench(["bench/shape=tiny"]))
    cfg = LogprobMemoryConfig(rows=4, length=256, chunk_size=256)
    peaks = {m: measure_once(m, bench.shape, cfg, "cpu", 1)["peak_gib"] for m in ("decoder", "chunked", "naive")}
    chunked, naive = peaks["chunked"] - peaks["decoder"], peaks["naive"] - peaks["decoder"]
    assert naive > 0.18  # at least the logits
    assert chunked <= 0.5 * naive
