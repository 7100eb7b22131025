"""`hipo perf` with TRL's DPOTrainer side by side (the [compare] extra): same pairs, same tokens, same start."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from hipo.app.perf_command import perf_command, to_perf_config
from hipo.errors import ConfigError
from hipo.perf.config import VariantConfig, check_variant
from tests.perf.test_perf_command import SMALL, compose_perf


@pytest.mark.slow
def test_trl_runs_beside_the_project_on_the_same_tokens(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("trl", reason="the [compare] extra (trl) is not installed")
    out = tmp_path / "perf.json"
    cfg = compose_perf(
        [*SMALL, "perf/suite=trl_smoke", "perf.isolation=process", "~perf.suite.variants.dpo", f"perf.out={out}"]
        + ["perf.suite.ratios=[{name: r, numerator: dpo-padded, denominator: trl-dpo, metric: peak_memory_gib}]"]
    )
    perf_command(cfg)
    records = {r["variant"]: r for r in json.loads(out.read_text())["records"]}
    ours, trl = records["dpo-padded"], records["trl-dpo"]
    assert trl["framework"] == "trl" and ours["trainable_parameters"] == trl["trainable_parameters"]
    # the same batches in the same order: TRL's completion_mask counts exactly the project's scored tokens
    assert trl["batch_index"] == ours["batch_index"] == [1, 0]
    assert trl["useful_tokens_per_step"] == ours["useful_tokens_per_step"]
    # a fresh LoRA (B = 0) is its own reference: both losses start at log 2
    for record in (ours, trl):
        assert record["step0_loss"] == pytest.approx(math.log(2), abs=1e-6)
        assert len(record["step_s"]) == 2 and all(math.isfinite(x) for x in record["loss"])
    printed = capsys.readouterr().out
    assert "trl-dpo" in printed and "r: dpo-padded / trl-dpo (peak_memory_gib)" in printed


def test_trl_variants_must_be_what_trl_can_run() -> None:
    check_variant("ok", VariantConfig(framework="trl", loss="dpo", packed=False, reference="cached"))
    with pytest.raises(ValueError, match="loss must be dpo"):
        check_variant("t", VariantConfig(framework="trl", loss="hipo", packed=False))
    with pytest.raises(ValueError, match="packed=false"):
        check_variant("t", VariantConfig(framework="trl", loss="dpo", packed=True))
    with pytest.raises(ValueError, match="framework must be one of"):
        check_variant("t", VariantConfig(framework="openrlhf"))


@pytest.mark.slow  # composes three perf suites
def test_every_trl_suite_composes_with_paired_padded_variants() -> None:
    for suite in ("trl_smoke", "trl_cpu", "trl_cached_cpu"):
        perf = to_perf_config(compose_perf([f"perf/suite={suite}"]))
        trl = [v for v in perf.suite.variants.values() if v.framework == "trl"]
        assert trl and all(not v.packed and v.loss == "dpo" for v in trl)


def test_missing_trl_is_a_config_error_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from hipo.perf.trl_variant import import_trl

    monkeypatch.setitem(sys.modules, "trl", None)  # `import trl` raises ImportError
    with pytest.raises(ConfigError) as caught:
        import_trl()
    assert "[compare]" in (caught.value.hint or "")


@pytest.mark.slow
def test_trl_precomputed_reference_is_timed_and_starts_at_log_2() -> None:
    pytest.importorskip("trl", reason="the [compare] extra (trl) is not installed")
    from hipo.perf.trl_variant import TRLRunner

    perf = to_perf_config(compose_perf([*SMALL, "perf.warmup_steps=0", "perf.steps=1"]))
    runner = TRLRunner(perf, "trl-cached", VariantConfig(framework="trl", loss="dpo", packed=False, reference="cached"))
    try:
        steps = runner.run(1, lambda: None, lambda result: None)
    finally:
        runner.close()
    assert runner.reference_setup_s > 0  # TRL scored every pair once, before the first step
    assert len(steps) == 1 and steps[0].loss == pytest.approx(math.log(2), abs=1e-5)
    assert steps[0].useful_tokens > 0 and steps[0].batch == 0


def test_the_run_wide_attention_override_reaches_every_framework() -> None:
    from hipo.perf.config import resolve_variant

    perf = to_perf_config(compose_perf(["perf/suite=trl_smoke", "perf.attn_implementation=eager"]))
    for name, variant in perf.suite.variants.items():
        assert resolve_variant(perf, name, variant).attn_implementation == "eager", name
    with pytest.raises(ValueError, match="packed=false"):
        resolve_variant(perf, "t", VariantConfig(framework="trl", loss="dpo", packed=True))
