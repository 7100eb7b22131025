"""`hipo perf`'s `hipo_train` variant: the bare step's model and pairs through `hipo train`'s Lightning loop, its
config checks, the clock of steps and loop spans, and the overhead ratio built from the measured spans."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import torch

from hipo.app.perf_command import perf_command, to_perf_config
from hipo.perf.clock import StepClock
from hipo.perf.config import LOOP_OWNED_KEYS, PerfConfig, RatioConfig, VariantConfig, check_variant
from hipo.perf.results import compute_ratios, format_table
from hipo.perf.suite import run_same_process_loop
from hipo.perf.train_loop import train_overrides
from tests.perf.test_perf_command import REQUIRED, SMALL, compose_perf

CPU = torch.device("cpu")


def test_train_overrides_are_checked_against_the_keys_the_run_owns() -> None:
    check_variant("ok", VariantConfig(framework="hipo_train", train_overrides=["trainer.checkpoint_every_n_steps=1"]))
    check_variant("ok", VariantConfig(framework="hipo_train", train_overrides=["~trainer.callbacks.lr_monitor"]))
    with pytest.raises(ValueError, match=r"loop\.train_overrides: only framework=hipo_train"):
        check_variant("loop", VariantConfig(framework="hipo", train_overrides=["trainer.log_every_n_steps=5"]))
    for owned in ("trainer.max_steps=9", "+trainer.precision=bf16-mixed", "logger.tracking_uri=x", "trainer=gpu"):
        with pytest.raises(ValueError, match="sets output_dir"):
            check_variant("loop", VariantConfig(framework="hipo_train", train_overrides=[owned]))
    with pytest.raises(ValueError, match="not KEY=VALUE"):
        check_variant("loop", VariantConfig(framework="hipo_train", train_overrides=["trainer.log_every_n_steps"]))


def test_the_run_sets_what_makes_both_sides_do_the_same_work(tmp_path: Path) -> None:
    cfg = PerfConfig(device="cpu", gradient_clip=0.5, seed=3)
    variant = VariantConfig(framework="hipo_train", train_overrides=["trainer.log_every_n_steps=5"])
    overrides = train_overrides(cfg, variant, tmp_path, total_steps=7)
    assert overrides[:2] == ["trainer=cpu", "trainer.log_every_n_steps=5"]  # the variant's, then the run's
    assert {"trainer.max_steps=7", "trainer.precision=32-true", "trainer.gradient_clip_val=0.5", "seed=3"} <= set(
        overrides
    )
    owned = {o.split("=", 1)[0] for o in overrides[2:]}
    assert owned - {"logger.tracking_uri", "logger.artifact_location", "logger.experiment_name"} <= set(LOOP_OWNED_KEYS)
    mixed = train_overrides(cfg, VariantConfig(framework="hipo_train", autocast="bfloat16"), tmp_path, 7)
    assert "trainer.precision=bf16-mixed" in mixed  # autocast over fp32 weights is Lightning's bf16-mixed


def test_clock_spans_exclude_the_wait_and_the_loop_span_covers_the_step() -> None:
    """Step 1: 20 ms of step, then 30 ms of loop work; step 2: 10 ms of step. Each wait (200 ms) is in neither span
    (the upper bounds leave a loaded machine 150 ms of oversleep, less than one wait)."""
    clock = StepClock(CPU, lambda: time.sleep(0.2), lambda result: None)
    clock.begin()
    time.sleep(0.02)
    first = clock.end(5, 0.7, 0)
    time.sleep(0.03)
    clock.begin()
    time.sleep(0.01)
    clock.end(6, 0.6, 1)
    results = clock.finish()
    assert clock.finish() is results and len(results) == 2  # a second finish changes nothing
    assert 0.02 <= first.seconds < 0.17 and 0.05 <= (first.loop_seconds or 0.0) < 0.2
    assert 0.01 <= results[1].seconds <= (results[1].loop_seconds or 0.0) < 0.16


def test_a_loop_ratio_needs_loop_spans_and_prints_the_overhead() -> None:
    records = {"loop": {"median_loop_step_s": 1.05}, "bare": {"median_loop_step_s": 1.0}, "same/dpo": {}}
    with pytest.raises(ValueError, match="'same/dpo' has no median_loop_step_s"):
        compute_ratios(records, [RatioConfig("x", "same/dpo", "bare", "median_loop_step_s")])
    ratios = compute_ratios(records, [RatioConfig("loop_overhead", "loop", "bare", "median_loop_step_s", 1.03, "le")])
    assert ratios[0]["value"] == pytest.approx(1.05) and ratios[0]["met"] is False
    assert "= 1.050 (+5.0 %)  target <= 1.03  NOT MET" in format_table([], ratios)


def test_same_process_loop_must_be_a_loop_variant() -> None:
    with pytest.raises(ValueError, match="same_process_loop.framework must be hipo_train"):
        run_same_process_loop(PerfConfig(), VariantConfig(framework="hipo"))


@pytest.mark.slow  # two Lightning fits with MLflow stores, a composition of `hipo train`'s config (~15 s)
def test_loop_variant_trains_like_the_bare_step_and_the_overhead_comes_from_its_spans(tmp_path: Path) -> None:
    out = tmp_path / "perf.json"
    cfg = compose_perf(
        [*SMALL, "perf/suite=loop_cpu", "perf.isolation=inline", "~perf.suite.variants.bare-b", f"perf.out={out}"]
        + ["perf.suite.ratios=[{name: loop_overhead, numerator: loop, denominator: bare, metric: median_loop_step_s}]"]
    )
    assert to_perf_config(cfg).suite.variants["loop"].framework == "hipo_train"
    perf_command(cfg)
    payload = json.loads(out.read_text())
    records = {r["variant"]: r for r in payload["records"]}
    assert list(records) == ["bare", "loop", "same/bare", "same/loop"]
    bare, loop = records["bare"], records["loop"]
    for record in records.values():
        assert all(key in record for key in (*REQUIRED, "median_loop_step_s", "loop_step_s"))
        assert len(record["step_s"]) == len(record["loop_step_s"]) == 2
        assert all(0 < s <= span for s, span in zip(record["step_s"], record["loop_step_s"], strict=True))
    # the same model, batches and optimisation: the loop's losses are the bare step's, step for step
    assert loop["batch_index"] == bare["batch_index"] == [1, 0]
    assert loop["useful_tokens_per_step"] == bare["useful_tokens_per_step"]
    assert loop["step0_loss"] == pytest.approx(bare["step0_loss"], abs=1e-6)
    assert loop["loss"] == pytest.approx(bare["loss"], abs=1e-5)
    # `hipo train`'s callbacks and MLflow logging ran around the steps (the clock first)
    assert loop["callbacks"][0] == "_LoopClock" and loop["trainer_precision"] == "32-true"
    assert {"ExactResume", "StopAtStepBoundary", "LearningRateMonitor", "ModelCheckpoint"} <= set(loop["callbacks"])
    assert {"train/loss", "train/scored_tokens"} <= set(loop["mlflow_metric_keys"])
    # the ratio is the measured spans' medians
    (ratio,) = payload["ratios"]
    assert ratio["value"] == pytest.approx(loop["median_loop_step_s"] / bare["median_loop_step_s"])
    assert math.isfinite(ratio["value"]) and records["same/loop"]["framework"] == "hipo_train"
    assert records["same/bare"]["framework"] == "hipo"
