"""`hipo perf` on the command line, and `hipo bench`, its old name: one deprecation line, then the same app with the
old `bench.*` / `bench/*` overrides read as `perf.*` / `perf/*`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hipo.cli import DEPRECATED_COMMANDS, bench_overrides_as_perf, main

DEPRECATION = "hipo bench is deprecated: use hipo perf (same options; bench.* keys are now perf.*)"


def test_old_override_keys_become_perf_keys_and_nothing_else_changes() -> None:
    old = ["bench/shape=tiny", "bench.steps=3", "+bench.x=1", "++bench.y=2", "~bench.suite.variants.hipo", "~bench"]
    new = ["perf/shape=tiny", "perf.steps=3", "+perf.x=1", "++perf.y=2", "~perf.suite.variants.hipo", "~perf"]
    assert bench_overrides_as_perf(old) == new
    kept = ["-m", "--cfg", "job", "hydra.run.dir=outputs/bench/x", "perf.out=bench.json", "benchmark=gsm8k", "benchy=1"]
    assert bench_overrides_as_perf(kept) == kept
    assert DEPRECATED_COMMANDS["bench"] == ("perf", DEPRECATION)


def _printed_job(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[dict, str]:
    """``hipo <args> --cfg job`` in process: the printed config and stderr (nothing runs, nothing is written)."""
    monkeypatch.chdir(tmp_path)
    main([*args, "--cfg", "job"])
    captured = capsys.readouterr()
    assert list(tmp_path.iterdir()) == []
    return yaml.safe_load(captured.out), captured.err


@pytest.mark.slow  # a composition
def test_hipo_perf_composes_the_perf_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    job, err = _printed_job(["perf", "perf/suite=trl_smoke", "perf.steps=3"], tmp_path, monkeypatch, capsys)
    assert list(job) == ["perf"] and job["perf"]["steps"] == 3 and job["perf"]["suite"]["name"] == "trl_smoke"
    assert "deprecated" not in err


@pytest.mark.slow  # a composition
def test_hipo_bench_prints_one_deprecation_line_and_accepts_old_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    old = ["bench/shape=smollm2-135m", "bench/suite=trl_cpu", "bench.steps=6", "~bench.suite.variants.trl-dpo"]
    job, err = _printed_job(["bench", *old], tmp_path, monkeypatch, capsys)
    assert err.splitlines() == [DEPRECATION]
    perf = job["perf"]
    assert (perf["shape"]["name"], perf["suite"]["name"], perf["steps"]) == ("smollm2-135m", "trl_cpu", 6)
    assert "trl-dpo" not in perf["suite"]["variants"] and "dpo-padded" in perf["suite"]["variants"]


@pytest.mark.slow  # a composition
def test_hipo_bench_with_a_wrong_key_is_a_user_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "bench.stepz=3", "--cfg", "job"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == DEPRECATION and "perf.stepz" in err
