"""`hipo train` continued from a previous run's adapter: anchored to that adapter, not to the base model.

A first 3-step LoRA run writes ``final/``; a second run continues from it (``model.adapter_path=<first>/final``).
Its policy equals its reference before training, so every held-out margin recorded in MLflow as ``val_before/...``
is 0 and every accuracy 1/2 (ties count 1/2). The policy pass is forced to run for real (``policy_starts_as_reference``
off), so the zeros are computed, not assumed. (Full fine-tuning continued from a folder: see
tests/models/test_models_continued_training.py.)
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from hipo.app import builders
from hipo.app import train as train_app
from hipo.app.eval_model import load_for_eval
from hipo.config.compose import compose_config
from hipo.models.logprobs import sequence_segment_logps
from hipo.models.lora import REFERENCE_ADAPTER, TRAINABLE_ADAPTER
from hipo.models.reference import AdapterReference
from hipo.training.module import PreferenceModule

pytestmark = pytest.mark.slow  # three tiny-model `hipo train` runs

TERMS = ("Rq", "Mt", "Ra", "whole")


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """The bundles and modules `train` builds; every module's validation runs the real policy pass."""
    seen: dict[str, list] = {"bundles": [], "modules": []}
    original_init, original_build = PreferenceModule.__init__, builders.build_policy

    def init(self: PreferenceModule, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        kwargs["policy_starts_as_reference"] = False  # no shortcut: score the policy before training too
        original_init(self, *args, **kwargs)
        seen["modules"].append(self)

    def build(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        bundle = original_build(*args, **kwargs)
        seen["bundles"].append(bundle)
        return bundle

    monkeypatch.setattr(PreferenceModule, "__init__", init)
    monkeypatch.setattr(train_app, "build_policy", build)
    return seen


def _first_run(tiny_cfg: Callable[..., DictConfig], tmp_path: Path, *overrides: str) -> Path:
    """A 3-step run (lr 1e-2: far from its start) whose ``final/`` is moved to ``tmp_path/first``."""
    result = train_app.train(tiny_cfg(*overrides, "optim.lr=1e-2"))
    first = tmp_path / "first"
    shutil.move(result["output_dir"], first)
    return first / "final"


def _metrics(cfg: DictConfig, run_id: str) -> dict[str, float]:
    return MlflowClient(cfg.logger.tracking_uri).get_run(run_id).data.metrics


def _assert_starts_at_its_reference(metrics: dict[str, float], exact: bool) -> None:
    """Margins before training exactly 0 and accuracies 1/2; or, ``exact=False``, margins 0 up to float rounding
    (whose sign then decides each pair's accuracy, so accuracies are not checked)."""
    for term in TERMS:
        margin = metrics[f"val_before/rewards/margin/{term}"]
        assert margin == 0.0 if exact else abs(margin) < 1e-4, (term, margin)
        assert not exact or metrics[f"val_before/rewards/accuracy/{term}"] == 0.5, term
    assert any(metrics[f"val_after/rewards/margin/{term}"] != 0.0 for term in TERMS)  # and training moved it


def test_lora_continued_from_an_adapter_is_anchored_to_that_adapter(
    tiny_cfg: Callable[..., DictConfig], captured: dict[str, list], tmp_path: Path
) -> None:
    adapter = _first_run(tiny_cfg, tmp_path, "model.lora.enabled=true", "model.lora.r=4")
    cfg = tiny_cfg(f"model.adapter_path={adapter}")
    result = train_app.train(cfg)

    _assert_starts_at_its_reference(_metrics(cfg, result["run_id"]), exact=True)
    bundle = captured["bundles"][-1]
    assert isinstance(bundle.reference, AdapterReference) and bundle.reference.adapter_name == REFERENCE_ADAPTER
    assert bundle.reference.model is bundle.policy
    # that reference is the starting adapter, far from the base model (what the old reference scored)
    batch = next(iter(captured["modules"][-1].trainer.datamodule.val_dataloader()))
    with torch.no_grad(), bundle.policy.disable_adapter():
        base = sequence_segment_logps(bundle.policy.eval(), batch).sums
    assert (bundle.reference.segment_logps(batch).sums - base).abs().max() > 1e-2

    final = Path(result["output_dir"]) / "final"
    assert not (final / REFERENCE_ADAPTER).exists()  # the frozen reference adapter is not saved with the result
    model, _, _ = load_for_eval(compose_config(["model=tiny", f"checkpoint={final}"], config_name="eval"))
    assert list(model.peft_config) == [TRAINABLE_ADAPTER]
    trained = {n: p for n, p in bundle.policy.named_parameters() if f".{TRAINABLE_ADAPTER}." in n}
    loaded = dict(model.named_parameters())
    assert trained and all(torch.equal(loaded[n], p.detach()) for n, p in trained.items())

    # the cached reference is the adapter too (filled by the same reference in other batch layouts: equal up to
    # float summation order)
    shutil.move(result["output_dir"], tmp_path / "second")
    cached_cfg = tiny_cfg(f"model.adapter_path={adapter}", "reference_cache=true")
    _assert_starts_at_its_reference(_metrics(cached_cfg, train_app.train(cached_cfg)["run_id"]), exact=False)
