"""`hipo perf` end to end in smoke mode (tiny shape, 1 warm-up + 2 steps), its configs, and its steps' realism."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from hipo.app.perf_command import perf_command, to_perf_config
from hipo.config.register import register_configs
from hipo.models.reference import build_reference
from hipo.perf.config import LogprobMemoryConfig
from hipo.perf.logprob_memory import measure_once
from hipo.perf.suite import record_names
from hipo.perf.variant import VariantRunner

pytestmark = pytest.mark.slow  # perf compositions, smoke runs, training steps and memory measurements

CONF = Path(__file__).resolve().parents[2] / "conf"
SMALL = [
    "perf/shape=tiny",
    "perf.pairs_per_step=2",
    "perf.num_batches=2",
    "perf.warmup_steps=1",
    "perf.steps=2",
    "perf.threads=1",
    "perf.mix.response_length=24",
    "perf.mix.response_max=48",
    "perf.mix.prompt_max=24",
]
REQUIRED = ("variant", "useful_tokens_per_s", "median_step_s", "peak_memory_gib")


def compose_perf(overrides: list[str]):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("perf", overrides=overrides)


@pytest.mark.parametrize("isolation", ["inline", "process"])
def test_smoke_run_writes_valid_json(tmp_path: Path, isolation: str, capsys) -> None:
    out = tmp_path / "perf.json"
    # process isolation: one worker (spawning a Python process costs seconds); inline: the whole smoke suite
    suite = [] if isolation == "inline" else ["~perf.suite.variants.hipo-padded", "~perf.suite.variants.hipo"]
    suite += [] if isolation == "inline" else ["perf.suite.ratios=[]", "perf.suite.same_process_losses=[]"]
    cfg = compose_perf([*SMALL, f"perf.isolation={isolation}", f"perf.out={out}", *suite])
    perf_command(cfg)
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
def test_every_perf_config_composes(group: str) -> None:
    for path in sorted((CONF / "perf" / group).glob("*.yaml")):
        perf = to_perf_config(compose_perf([f"perf/{group}={path.stem}"]))
        assert getattr(perf, group).name == path.stem
        if group == "suite":
            names = set(record_names(perf.suite))
            assert all(r.numerator in names and r.denominator in names for r in perf.suite.ratios), path


def test_unknown_key_is_rejected() -> None:
    with pytest.raises(Exception, match="pairs_per_stepp"):
        compose_perf(["perf.pairs_per_stepp=3"])
    with pytest.raises(Exception, match="steps"):
        to_perf_config(compose_perf(["perf.steps=many"]))


def test_steps_are_real_training_steps_and_cached_equals_live() -> None:
    perf = to_perf_config(compose_perf(SMALL))
    variant = perf.suite.variants["hipo-cached"]
    runner = VariantRunner(perf, "hipo-cached", variant)
    live = build_reference(runner.module.policy)
    for batch in runner.batches:  # before any step the cached rows are the live reference's
        cached, fresh = runner.reference(batch), live.segment_logps(batch, chunk_size=perf.logprob_chunk_size)
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
    perf = to_perf_config(compose_perf(["perf/shape=tiny"]))
    cfg = LogprobMemoryConfig(rows=4, length=256, chunk_size=256)
    peaks = {m: measure_once(m, perf.shape, cfg, "cpu", 1)["peak_gib"] for m in ("decoder", "chunked", "naive")}
    chunked, naive = peaks["chunked"] - peaks["decoder"], peaks["naive"] - peaks["decoder"]
    assert naive > 0.18  # at least the logits
    assert chunked <= 0.5 * naive


def test_reference_free_variants_run_no_reference_in_perf(tmp_path: Path) -> None:
    """``reference_free_cpu`` in smoke size: a reference-free record says so and its loss starts where SimPO / ORPO
    start (not at DPO's log 2, which a reference equal to the policy would give); an isolated variant builds no
    reference at all."""
    out = tmp_path / "perf.json"
    cfg = compose_perf([*SMALL, "perf/suite=reference_free_cpu", "perf.isolation=inline", f"perf.out={out}"])
    perf_command(cfg)
    payload = json.loads(out.read_text())
    records = {r["variant"]: r for r in payload["records"]}
    assert list(records) == [
        "same/dpo",
        "same/dpo:simpo",
        "same/dpo:cpo",
        "same/dpo:orpo",
        "same/hipo",
        "same/hipo:simpo",
    ]
    assert [r["needs_reference"] for r in records.values()] == [True, False, False, False, True, False]
    assert (
        records["same/dpo:simpo"]["loss_variant"] == "simpo" and records["same/hipo:simpo"]["loss_variant"] == "simpo"
    )
    assert records["same/dpo"]["step0_loss"] == pytest.approx(0.693147, abs=1e-5)  # a fresh LoRA is its reference
    assert records["same/dpo:cpo"]["step0_loss"] > 1.0  # CPO's NLL term (nats per token of a random model) is in it
    assert {r["name"] for r in payload["ratios"]} == {"simpo_vs_dpo", "cpo_vs_dpo", "orpo_vs_dpo", "hipo_simpo_vs_hipo"}
    perf = to_perf_config(compose_perf([*SMALL]))
    runner = VariantRunner(perf, "simpo", replace(perf.suite.variants["hipo"], loss="dpo", loss_variant="simpo"))
    assert runner.reference is None and runner.module._reference is None
    assert torch.isfinite(torch.tensor(runner.step().loss))
