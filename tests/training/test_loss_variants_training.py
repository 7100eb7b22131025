"""Every loss variant trains from the command line, on the whole response (``method=dpo``) and per segment
(``method=hipo``), on the tiny model; the reference-free ones (SimPO, CPO, ORPO) build, run and cache no reference.

The per-variant test takes the command line's path up to the first optimizer step: the composed config with
``loss.variant=X``, the component checks and the loss ``hipo train`` instantiates, then one training step of the
LightningModule on a batch of the job's data module. One full ``hipo train`` run per reference-free method covers
the rest of the loop (the other variants share it: the Trainer, callbacks and validation never read the variant).
BCO's running mean under exact resume and AOT / BCO under DDP are in test_resume.py and test_distributed.py.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from hipo.app import builders
from hipo.app import train as train_app
from hipo.app.builders import instantiate_component
from hipo.app.train_setup import prepare_job
from hipo.config.components import check_components
from hipo.losses.variants import VARIANT_INFO, VARIANTS
from hipo.models.logprobs import sequence_segment_logps
from hipo.models.tiny import build_tiny_model
from hipo.training.module import PreferenceModule

pytestmark = pytest.mark.slow  # 36 config compositions and training steps (~15 s), two `hipo train` runs


@pytest.fixture(scope="module")
def first_batch(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A training batch of the default tiny-model job's data module (2 synthetic pairs, segmented Rq/Mt/Ra), its
    data cache in a temporary folder."""
    import os
    from pathlib import Path

    from hipo.config.compose import compose_config
    from tests.training.conftest import SMALL_SYNTHETIC, TINY_RUN

    out = tmp_path_factory.mktemp("variants")
    model_dir = Path(os.environ.get("HIPO_CACHE", Path.home() / ".cache" / "hipo")) / "models"
    (out / "cache").mkdir()
    if model_dir.exists():
        (out / "cache" / "models").symlink_to(model_dir)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HIPO_CACHE", str(out / "cache"))
        overrides = [*TINY_RUN, *SMALL_SYNTHETIC, "data.batch_size=2", f"output_dir={out / 'run'}"]
        job = prepare_job(compose_config(overrides))
        return next(iter(job.datamodule.train_dataloader()))


@pytest.mark.parametrize("method", ["dpo", "hipo"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_takes_a_training_step_from_the_command_line(
    tiny_cfg: Callable[..., DictConfig], first_batch: Any, method: str, variant: str
) -> None:
    cfg = tiny_cfg(f"method={method}", f"loss.variant={variant}")
    check_components(cfg)
    loss = instantiate_component(cfg.loss)
    info = VARIANT_INFO[variant]
    assert loss.variant == variant and loss.needs_reference == info.needs_reference
    assert loss.nll_weight == info.nll_weight  # CPO and ORPO carry their NLL term unless told otherwise

    policy = build_tiny_model(seed=0).train()
    frozen = copy.deepcopy(policy).eval()
    reference_calls = []

    def reference(batch: Any) -> Any:
        reference_calls.append(batch)
        return sequence_segment_logps(frozen, batch)

    module = PreferenceModule(
        policy, loss, reference if loss.needs_reference else None, list(cfg.segments), cfg.optim, 1024
    )
    optimizer = module.configure_optimizers()["optimizer"]
    before = {name: p.detach().clone() for name, p in policy.named_parameters()}
    out = module.compute_loss(first_batch)
    out.loss.backward()
    grads = [p.grad for p in policy.parameters() if p.grad is not None]
    assert torch.isfinite(out.loss) and grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    optimizer.step()
    assert any(not torch.equal(p, before[name]) for name, p in policy.named_parameters())
    assert len(reference_calls) == int(info.needs_reference)
    terms = ["Rq", "Mt", "Ra", "whole"] if method == "hipo" else ["whole"]
    if method == "hipo":  # one term per segment plus the whole term, each logged
        assert {f"term_loss/{term}" for term in terms} <= set(out.metrics), sorted(out.metrics)


@pytest.mark.parametrize("method", ["dpo", "hipo"])
def test_a_reference_free_variant_trains_with_no_reference_at_all(
    tiny_cfg: Callable[..., DictConfig], monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    """``hipo train method=... loss.variant=simpo|orpo reference_cache=true``: no frozen copy, no reference pass,
    nothing cached; held-out margins are the policy's own (rewards beta * log pi)."""

    def no_reference(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a reference-free variant must not build a reference")

    asked: list[bool] = []
    build_policy = builders.build_policy

    def spy(model_cfg: DictConfig, with_reference: bool = True) -> Any:
        asked.append(with_reference)
        return build_policy(model_cfg, with_reference=with_reference)

    monkeypatch.setattr(builders, "build_reference", no_reference)
    monkeypatch.setattr(train_app, "build_policy", spy)
    monkeypatch.setattr(train_app, "cached_reference_fn", no_reference)
    variant = "simpo" if method == "dpo" else "orpo"
    cfg = tiny_cfg(f"method={method}", f"loss.variant={variant}", "trainer.max_steps=2", "reference_cache=true")
    train_app.train(cfg)
    assert asked == [False]
    client = MlflowClient(cfg.logger.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name(cfg.logger.experiment_name).experiment_id])
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    assert {"val_before/rewards/margin/whole", "val_after/rewards/margin/whole", "train/nll"} <= set(metrics)
    assert metrics["val_after/rewards/margin/whole"] != metrics["val_before/rewards/margin/whole"]


def test_ld_alpha_trains_per_segment_with_the_live_reference_and_refuses_the_cache(
    tiny_cfg: Callable[..., DictConfig],
) -> None:
    """LD-DPO's tails reach the loss from `hipo train`'s own policy and reference passes; the reference cache keeps
    no tails, so asking for both is a config error before any model loads."""
    from hipo.errors import ConfigError

    with pytest.raises(ConfigError, match="loss.ld_alpha: .*reference_cache=false"):
        prepare_job(tiny_cfg("method=hipo", "loss.ld_alpha=0.5", "reference_cache=true"))
    cfg = tiny_cfg("method=hipo", "loss.ld_alpha=0.5", "trainer.max_steps=2")
    train_app.train(cfg)
    client = MlflowClient(cfg.logger.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name(cfg.logger.experiment_name).experiment_id])
    assert run.info.status == "FINISHED" and {"train/term_loss/Mt", "val_after/rewards/margin/Mt"} <= set(
        run.data.metrics
    )


def test_subnormals_flushed_first_are_flushed_in_every_thread() -> None:
    """Set before the first torch op (as the ``hipo`` command does), flush-to-zero holds in the intra-op pool's
    threads too: every element of a 2-thread product that would be subnormal is 0."""
    import subprocess
    import sys

    code = (
        "import torch; from hipo.training.denormals import flush_denormals; torch.set_num_threads(2); "
        "assert flush_denormals(); a = torch.full((4_000_000,), 1e-30); print(float(((a * 1e-9) == 0).float().mean()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout.strip()) == 1.0
