"""Continued training: the reference is the STARTING model (a saved adapter, or a fine-tuned folder), not the base.

With ``model.adapter_path`` the starting adapter is loaded twice onto one ``PeftModel``: trainable (``default``) and
frozen (``reference``); the reference scores with the frozen one active. So the policy equals its reference at
step 0 (every margin 0), the reference never moves, and only the trainable adapter is optimized and saved.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hipo.app.builders import build_policy
from hipo.config.compose import compose_config
from hipo.config.schema import OptimConfig
from hipo.losses.modules import DPOLoss
from hipo.models.logprobs import sequence_segment_logps
from hipo.models.lora import (
    REFERENCE_ADAPTER,
    TRAINABLE_ADAPTER,
    active_adapter,
    adapter_parameters,
    apply_lora,
    load_adapter,
    load_reference_adapter,
    save_adapter,
)
from hipo.models.reference import AdapterReference, FrozenCopyReference, build_reference
from hipo.models.tiny import build_tiny_model
from hipo.training.module import PreferenceModule
from tests.helpers.model_batches import adam_step, padded_batch, random_sequences

pytestmark = pytest.mark.slow  # builds, trains and reloads LoRA policies from a saved adapter

S = 3


@pytest.fixture(scope="module")
def batch():
    return padded_batch(random_sequences(4, S, 49152, seed=11), S)


def _logps(model: torch.nn.Module, batch) -> torch.Tensor:
    """[N, S+1] whole-model log-prob sums, eval mode, no grad."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        sums = sequence_segment_logps(model, batch).sums
    model.train(was_training)
    return sums


@pytest.fixture(scope="module")
def sft_adapter(tmp_path_factory: pytest.TempPathFactory, batch) -> Path:
    """An adapter trained 3 steps on the tiny model (seed 0), so that it differs from the base (B != 0)."""
    policy = apply_lora(build_tiny_model(seed=0), r=4, alpha=8, dropout=0.0)
    for _ in range(3):
        adam_step(policy, batch)
    assert any(torch.count_nonzero(p) for n, p in policy.named_parameters() if "lora_B" in n)
    return save_adapter(policy, tmp_path_factory.mktemp("sft") / "adapter")


def _continued(adapter: Path):
    return build_policy(compose_config(["model=tiny", f"model.adapter_path={adapter}"]).model)


def test_reference_is_the_starting_adapter_not_the_base(sft_adapter: Path, batch) -> None:
    bundle = _continued(sft_adapter)
    assert isinstance(bundle.reference, AdapterReference) and bundle.reference.adapter_name == REFERENCE_ADAPTER
    assert bundle.reference.model is bundle.policy  # no second copy of the base weights
    policy = _logps(bundle.policy, batch)
    reference = bundle.reference.segment_logps(batch)
    assert torch.equal(policy, reference.sums)  # exactly: margins before training are exactly 0
    base = _logps(build_tiny_model(seed=0), batch)
    assert (reference.sums - base).abs().max() > 1e-3  # ... and that is not the base model's value
    assert bundle.policy.active_adapter == TRAINABLE_ADAPTER  # the trainable adapter is active again


def test_reference_adapter_is_frozen_outside_the_optimizer_and_does_not_move(sft_adapter: Path, batch) -> None:
    bundle = _continued(sft_adapter)
    policy = bundle.policy
    frozen = adapter_parameters(policy, REFERENCE_ADAPTER)
    trained = adapter_parameters(policy, TRAINABLE_ADAPTER)
    assert frozen and len(frozen) == len(trained)
    assert not any(p.requires_grad for _, p in frozen)
    trainable = {id(p) for p in policy.parameters() if p.requires_grad}
    assert trainable == {id(p) for _, p in trained}  # the trainable adapter only, not the reference's copy
    module = PreferenceModule(
        policy=policy,
        loss=DPOLoss(beta=0.1),
        reference=lambda b: bundle.reference.segment_logps(b),
        segment_names=["Rq", "Mt", "Ra"],
        optim=OptimConfig(lr=1e-2, scheduler="constant"),
    )
    optimized = {id(p) for group in module.configure_optimizers()["optimizer"].param_groups for p in group["params"]}
    assert optimized == trainable

    before = {n: p.detach().clone() for n, p in frozen}
    reference_before = bundle.reference.segment_logps(batch).sums
    assert not any(p.requires_grad for _, p in frozen)  # scoring switched adapters and switched the flags back
    assert all(p.requires_grad for _, p in trained)
    adam_step(policy, batch)  # the training flow: reference scored first, then the policy's forward and backward
    assert all(p.grad is None for _, p in frozen)
    assert all(torch.equal(p, before[n]) for n, p in frozen)
    reference_after = bundle.reference.segment_logps(batch).sums
    assert torch.equal(reference_after, reference_before)
    assert not torch.allclose(_logps(policy, batch), reference_after)  # the policy moved away from it


def test_saving_the_continued_policy_writes_only_the_trained_adapter(sft_adapter: Path, batch, tmp_path) -> None:
    """peft's ``save_pretrained`` writes EVERY adapter (the reference one into ``reference/``); save_adapter
    writes the trained one alone, and loading it back gives the trained policy."""
    bundle = _continued(sft_adapter)
    adam_step(bundle.policy, batch)
    expected = _logps(bundle.policy, batch)
    folder = save_adapter(bundle.policy, tmp_path / "final")
    assert not (folder / REFERENCE_ADAPTER).exists()
    loaded = load_adapter(build_tiny_model(seed=0), folder)
    assert list(loaded.peft_config) == [TRAINABLE_ADAPTER]
    torch.testing.assert_close(_logps(loaded, batch), expected, rtol=0, atol=1e-5)


def test_evaluation_bundle_loads_no_reference_adapter(sft_adapter: Path) -> None:
    cfg = compose_config(["model=tiny", f"model.adapter_path={sft_adapter}"])
    bundle = build_policy(cfg.model, with_reference=False)
    assert bundle.reference is None and list(bundle.policy.peft_config) == [TRAINABLE_ADAPTER]


def test_active_adapter_restores_the_adapter_and_every_flag_after_an_error(sft_adapter: Path) -> None:
    policy = load_adapter(build_tiny_model(seed=0), sft_adapter, trainable=True)
    load_reference_adapter(policy, sft_adapter)
    flags = {n: p.requires_grad for n, p in policy.named_parameters()}
    with pytest.raises(RuntimeError, match="boom"), active_adapter(policy, REFERENCE_ADAPTER):
        assert policy.active_adapter == REFERENCE_ADAPTER
        raise RuntimeError("boom")
    assert policy.active_adapter == TRAINABLE_ADAPTER
    assert flags == {n: p.requires_grad for n, p in policy.named_parameters()}
    with pytest.raises(ValueError, match="no adapter named 'missing'"), active_adapter(policy, "missing"):
        pass


def test_adapter_reference_checks_and_auto_mode(sft_adapter: Path) -> None:
    with pytest.raises(TypeError, match="needs a PeftModel"):
        AdapterReference(build_tiny_model())  # type: ignore[arg-type]
    policy = load_adapter(build_tiny_model(seed=0), sft_adapter, trainable=True)
    with pytest.raises(ValueError, match="has no adapter 'reference'"):
        build_reference(policy, mode="reference_adapter")
    with pytest.raises(ValueError, match="already has an adapter named 'default'"):
        load_reference_adapter(policy, sft_adapter, name=TRAINABLE_ADAPTER)
    load_reference_adapter(policy, sft_adapter)
    assert isinstance(build_reference(policy), AdapterReference)  # "auto" finds the frozen adapter
    next(p for _, p in adapter_parameters(policy, REFERENCE_ADAPTER)).requires_grad_(True)
    with pytest.raises(ValueError, match="has trainable parameters"):
        AdapterReference(policy)


def test_full_model_continued_from_a_fine_tuned_folder_starts_equal_to_its_reference(
    tmp_path: Path, batch, smollm2_tokenizer
) -> None:
    """Full fine-tuning from a saved folder: the frozen copy is of THAT model (not of a base), equal at step 0."""
    tuned = build_tiny_model(seed=0)
    adam_step(tuned, batch)
    folder = tmp_path / "tuned"
    tuned.save_pretrained(folder)
    smollm2_tokenizer.save_pretrained(folder)
    bundle = build_policy(compose_config(["model=tiny", f"model.name_or_path={folder}"]).model)
    assert isinstance(bundle.reference, FrozenCopyReference) and bundle.reference.adapter_name is None
    reference = bundle.reference.segment_logps(batch).sums
    assert torch.equal(_logps(bundle.policy, batch), reference)
    assert (reference - _logps(build_tiny_model(seed=0), batch)).abs().max() > 1e-3  # the tuned model, not the base
    adam_step(bundle.policy, batch)
    assert torch.equal(bundle.reference.segment_logps(batch).sums, reference)
    assert not torch.allclose(_logps(bundle.policy, batch), reference)
