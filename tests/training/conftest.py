"""Composed training configs for the tiny model: small data, a few steps, a temporary MLflow store and cache."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from hipo.config.compose import compose_config
from hipo.training.module import PreferenceModule

# float32 whatever the host: `trainer.precision=auto` picks bf16-mixed on CPUs with native bf16, and these runs compare
# numbers (auto's resolution is tested in test_precision.py)
TINY_RUN = [
    "model=tiny",
    "trainer.precision=32-true",
    "trainer.max_steps=3",
    "trainer.enable_progress_bar=false",
    "trainer.checkpoint_every_n_steps=0",
    "data.batch_size=4",
    "data.eval_batch_size=8",
    "optim.lr=1e-3",
]


SMALL_SYNTHETIC = ["data.source.num_pairs=24", "data.val_source.num_pairs=8"]


@pytest.fixture
def tiny_cfg(tmp_path: Path, mlflow_uri: str, isolated_data_cache: Path) -> Callable[..., DictConfig]:
    """``tiny_cfg(*overrides)``: the composed `hipo train` config of a 3-step tiny-model run into ``tmp_path``."""

    def make(*overrides: str) -> DictConfig:
        synthetic = not any(o.startswith("data=") for o in overrides)
        return compose_config(
            [
                *TINY_RUN,
                *(SMALL_SYNTHETIC if synthetic else []),
                f"logger.tracking_uri={mlflow_uri}",
                f"logger.artifact_location={tmp_path / 'mlruns'}",
                f"output_dir={tmp_path / 'run'}",
                *overrides,
            ]
        )

    return make


@pytest.fixture
def crash_at_step(monkeypatch: pytest.MonkeyPatch) -> Callable[[int | None], None]:
    """``crash_at_step(n)``: a training step raises ``RuntimeError("simulated crash")`` when global step ``n``
    begins (before it changes anything); ``crash_at_step(None)`` trains normally again."""
    original = PreferenceModule.training_step

    def arm(step: int | None) -> None:
        def crashing(self: PreferenceModule, batch, batch_idx: int):  # noqa: ANN001, ANN202
            if self.global_step == step:
                raise RuntimeError("simulated crash")
            return original(self, batch, batch_idx)

        monkeypatch.setattr(PreferenceModule, "training_step", original if step is None else crashing)

    return arm
