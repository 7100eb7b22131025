"""LoRA wrapping, adapter save/load, and both reference forms against the base model."""

from __future__ import annotations

import pytest
import torch

from hipo.models.logprobs import naive_token_logps, sequence_segment_logps
from hipo.models.lora import apply_lora, load_adapter, save_adapter
from hipo.models.reference import AdapterDisabledReference, FrozenCopyReference, build_reference
from hipo.models.tiny import build_tiny_model
from tests.helpers.model_batches import adam_step, padded_batch, random_sequences

S = 3


@pytest.fixture(scope="module")
def batch():
    return padded_batch(random_sequences(4, S, 49152, seed=11), S)


def test_apply_lora_trains_only_adapters_and_starts_at_the_base(batch):
    base = build_tiny_model(seed=0)
    with torch.no_grad():
        before = naive_token_logps(base, batch)
    policy = apply_lora(build_tiny_model(seed=0), r=4, alpha=8, dropout=0.0)
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    # "all-linear": q/k/v/o and the three MLP projections of both layers, A and B each; never the LM head.
    assert len(trainable) == 2 * 7 * 2
    assert not any("lm_head" in n for n in trainable)
    with torch.no_grad():
        torch.testing.assert_close(naive_token_logps(policy, batch), before)  # B = 0 at init


def test_apply_lora_target_list_and_errors():
    policy = apply_lora(build_tiny_model(), r=2, target_modules=["q_proj", "v_proj"])
    names = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert len(names) == 2 * 2 * 2 and all(("q_proj" in n) or ("v_proj" in n) for n in names)
    with pytest.raises(ValueError, match="r must be"):
        apply_lora(build_tiny_model(), r=0)
    with pytest.raises(ValueError, match="target_modules"):
        apply_lora(build_tiny_model(), target_modules="q_proj")
    with pytest.raises(ValueError, match="already has adapters"):
        apply_lora(policy)


def test_adapter_disabled_reference_is_the_base_model_and_diverges_from_the_policy(batch):
    base = build_tiny_model(seed=0)
    with torch.no_grad():
        base_logps = sequence_segment_logps(base, batch)
    policy = apply_lora(build_tiny_model(seed=0), r=4, dropout=0.0)
    reference = build_reference(policy)
    assert isinstance(reference, AdapterDisabledReference)
    assert reference.model is policy  # no copy

    adam_step(policy, batch)

    ref = reference.segment_logps(batch, chunk_size=3)
    torch.testing.assert_close(ref.sums, base_logps.sums, rtol=1e-6, atol=1e-5)
    assert torch.equal(ref.counts, base_logps.counts)
    assert not ref.sums.requires_grad
    with torch.no_grad():
        pol = sequence_segment_logps(policy, batch)
    assert torch.all(pol.sums[:, -1] > ref.sums[:, -1] + 1e-3)  # the step raised the policy's log-probs
    assert all(layer_active(policy))  # adapters are enabled again after scoring


def layer_active(policy) -> list[bool]:
    return [not m.disable_adapters for m in policy.modules() if hasattr(m, "disable_adapters") and hasattr(m, "r")]


def test_reference_scores_in_eval_mode_and_restores_training_mode(batch):
    """Attention dropout 0.5 in the base model, policy in train mode: the policy's own passes differ (dropout is
    live), the reference's two passes are identical and equal the base model in eval mode, and the policy is back in
    train mode afterwards."""
    base = build_tiny_model(seed=0)
    with torch.no_grad():
        expected = sequence_segment_logps(base, batch).sums
    model = build_tiny_model(seed=0)
    for layer in model.model.layers:
        layer.self_attn.attention_dropout = 0.5
    policy = apply_lora(model, r=4, dropout=0.5).train()
    with torch.no_grad():
        noisy = [sequence_segment_logps(policy, batch).sums for _ in range(2)]
    assert not torch.equal(*noisy)  # guard: dropout really is active in train mode
    reference = build_reference(policy)
    a, b = reference.segment_logps(batch), reference.segment_logps(batch)
    assert torch.equal(a.sums, b.sums)
    torch.testing.assert_close(a.sums, expected, rtol=1e-6, atol=1e-5)
    assert all(m.training for m in policy.modules())


def test_frozen_copy_reference_does_not_move_when_the_policy_trains(batch):
    policy = build_tiny_model(seed=3)
    reference = build_reference(policy)
    assert isinstance(reference, FrozenCopyReference)
    before_params = {n: p.detach().clone() for n, p in reference.model.named_parameters()}
    before = reference.segment_logps(batch)

    adam_step(policy, batch)

    assert all(not p.requires_grad for p in reference.model.parameters())
    policy_params = {id(p) for p in policy.parameters()}
    assert not any(id(p) in policy_params for p in reference.model.parameters())
    for name, p in reference.model.named_parameters():
        assert torch.equal(p, before_params[name]), name
    changed = [n for n, p in policy.named_parameters() if not torch.equal(p, before_params[n])]
    assert changed  # the policy did move
    after = reference.segment_logps(batch)
    assert torch.equal(after.sums, before.sums)
    with torch.no_grad():
        assert not torch.allclose(sequence_segment_logps(policy, batch).sums, after.sums)


def test_reference_is_not_a_submodule_of_a_module_that_holds_it():
    """Held by a LightningModule-like nn.Module, the frozen copy adds no parameters and no state_dict entries."""

    class Holder(torch.nn.Module):
        def __init__(self, policy):
            super().__init__()
            self.policy = policy
            self.reference = build_reference(policy)

    holder = Holder(build_tiny_model())
    assert len(list(holder.parameters())) == len(list(holder.policy.parameters()))
    assert all(key.startswith("policy.") for key in holder.state_dict())


def test_build_reference_modes():
    with pytest.raises(TypeError, match="needs a PeftModel"):
        build_reference(build_tiny_model(), mode="disable_adapter")
    with pytest.raises(ValueError, match="mode must be"):
        build_reference(build_tiny_model(), mode="copy")  # type: ignore[arg-type]


def test_save_and_load_adapter_round_trip(tmp_path, batch):
    policy = apply_lora(build_tiny_model(seed=0), r=4, dropout=0.0)
    adam_step(policy, batch)
    with torch.no_grad():
        expected = sequence_segment_logps(policy.eval(), batch).sums
    folder = save_adapter(policy, tmp_path / "adapter")
    assert (folder / "adapter_config.json").exists()

    evaluated = load_adapter(build_tiny_model(seed=0), folder)
    assert not any(p.requires_grad for p in evaluated.parameters())
    with torch.no_grad():
        torch.testing.assert_close(sequence_segment_logps(evaluated, batch).sums, expected, rtol=1e-6, atol=1e-5)
    continued = load_adapter(build_tiny_model(seed=0), folder, trainable=True)
    assert any(p.requires_grad for p in continued.parameters())


def test_load_adapter_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_adapter(build_tiny_model(), tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="has no adapter_config.json"):
        load_adapter(build_tiny_model(), tmp_path)
    with pytest.raises(TypeError, match="expected a PeftModel"):
        save_adapter(build_tiny_model(), tmp_path / "x")  # type: ignore[arg-type]
