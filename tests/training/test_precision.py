"""`trainer.precision=auto`: bf16 mixed precision only where the hardware has native bf16, resolved before training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hipo.training import precision as precision_module
from hipo.training.precision import cpu_flags, cpu_has_native_bf16, resolve_precision

AVX2_ONLY = "processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu avx2\n"
SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return path


def test_cpu_flags_come_from_the_first_processor(tmp_path: Path) -> None:
    assert cpu_flags(write(tmp_path, AVX2_ONLY)) == {"fpu", "sse", "sse2", "avx", "avx2", "fma"}
    assert cpu_flags(tmp_path / "missing") == set()


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="Linux cpuinfo")
def test_native_bf16_is_read_from_the_flags(tmp_path: Path) -> None:
    assert not cpu_has_native_bf16(write(tmp_path, AVX2_ONLY))
    assert cpu_has_native_bf16(write(tmp_path, SAPPHIRE_RAPIDS))


@pytest.mark.parametrize("native, expected", [(False, "32-true"), (True, "bf16-mixed")])
def test_auto_on_cpu_follows_native_bf16(monkeypatch: pytest.MonkeyPatch, native: bool, expected: str) -> None:
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: native)
    resolved, reason = resolve_precision("auto", "cpu")
    assert resolved == expected and "bf16" in reason


def test_an_explicit_precision_is_kept() -> None:
    assert resolve_precision("bf16-mixed", "cpu") == ("bf16-mixed", "as configured")
    assert resolve_precision("32-true", "gpu")[0] == "32-true"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU branch of accelerator=auto")
def test_auto_accelerator_without_cuda_is_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", "auto")[0] == "32-true"


@pytest.mark.slow  # a composition
def test_the_cpu_trainer_config_resolves_auto_before_training(monkeypatch: pytest.MonkeyPatch) -> None:
    from hipo.app.train_setup import _resolve_precision
    from hipo.app.validate import validate_trainer
    from hipo.config.compose import compose_config

    cfg = compose_config(["trainer=cpu"], "config")
    assert cfg.trainer.precision == "auto"
    assert validate_trainer(cfg.trainer) == 1
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: True)
    _resolve_precision(cfg)
    assert cfg.trainer.precision == "bf16-mixed"  # what the Trainer, the params and the reference cache key see


def test_the_matmul_probe_measures_both_dtypes() -> None:
    from hipo.training.precision import matmul_gflops

    for dtype in ("float32", "bfloat16"):
        assert matmul_gflops(dtype, size=(16, 32, 16), repeats=1) > 0
