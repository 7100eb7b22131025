"""The one interface of the loss modules (``PreferenceLoss``): ``paired``, ``beta``, ``weights``, ``set_step``.

Every loss that conf/loss/*.yaml builds exposes it, and the training loop uses it instead of probing the loss with
``getattr`` / ``hasattr``: the schedule hook moves staged weights, and is a no-op for every other loss.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from hipo.app.builders import instantiate_component
from hipo.config.compose import compose_config
from hipo.config.schema import OptimConfig
from hipo.losses.modules import DPOLoss, HiPOLoss, KTOLoss, PreferenceLoss, SegmentKTOLoss, SFTLoss
from hipo.losses.types import LossOutput, SegmentLogps
from hipo.losses.weights import FixedWeights, SegmentWeights, StagedWeights, UncertaintyWeights
from hipo.training.module import PreferenceModule

CONF = Path(__file__).resolve().parents[2] / "conf"
LOSSES = sorted(p.stem for p in (CONF / "loss").glob("*.yaml"))
WEIGHTS = sorted(p.stem for p in (CONF / "loss" / "weights").glob("*.yaml"))
EXPECTED = {
    "dpo": (DPOLoss, True),
    "hipo": (HiPOLoss, True),
    "kto": (KTOLoss, False),
    "hipo_kto": (SegmentKTOLoss, False),
    "sft": (SFTLoss, False),
}


def test_the_loss_configs_are_the_known_ones() -> None:
    assert LOSSES == sorted(EXPECTED)  # a new conf/loss option needs its row in EXPECTED


@pytest.mark.slow  # a composition per loss
@pytest.mark.parametrize("name", LOSSES)
def test_every_configured_loss_is_a_preference_loss(name: str) -> None:
    cfg = compose_config([f"loss={name}"])
    loss = instantiate_component(cfg.loss)
    cls, paired = EXPECTED[name]
    assert isinstance(loss, PreferenceLoss) and type(loss) is cls
    assert type(loss).paired is paired and loss.paired is paired
    assert isinstance(loss.beta, float) and loss.beta == pytest.approx(float(cfg.loss.get("beta", 1.0)))
    assert loss.needs_reference is (name != "sft") and loss.responses_only is (name == "sft")
    if name in ("hipo", "hipo_kto"):
        assert isinstance(loss.weights, SegmentWeights)
        assert loss.weights is loss.get_submodule("weights")  # a registered submodule (learned weights train)
    else:
        assert loss.weights is None


@pytest.mark.slow  # a composition per weight option
@pytest.mark.parametrize("weights", WEIGHTS)
def test_every_weight_option_gives_a_hipo_loss_with_those_weights(weights: str) -> None:
    cfg = compose_config(["loss=hipo", f"loss/weights={weights}"])
    loss = instantiate_component(cfg.loss)
    assert isinstance(loss, PreferenceLoss) and isinstance(loss.weights, SegmentWeights)
    assert isinstance(loss.weights, StagedWeights) == (weights == "staged")


def test_set_step_on_hipo_moves_staged_weights() -> None:
    cfg = compose_config(["loss=hipo", "loss/weights=staged", "trainer.max_steps=8"])
    loss = instantiate_component(cfg.loss)
    assert isinstance(loss, HiPOLoss) and isinstance(loss.weights, StagedWeights)
    stages = [list(s) for s in cfg.loss.weights.stages]
    loss.set_step(0)
    assert loss.weights().tolist() == pytest.approx(stages[0])
    loss.set_step(2)  # 8 steps in four stages of 2
    assert loss.weights().tolist() == pytest.approx(stages[1])
    loss.set_step(7)
    assert loss.weights().tolist() == pytest.approx(stages[3])
    loss.set_step(0)  # the step is reported, not accumulated
    assert loss.weights().tolist() == pytest.approx(stages[0])


def test_set_step_on_hipo_changes_the_loss_value(fake_batch) -> None:
    sums = torch.tensor([[-1.0, -2.0], [-3.0, -1.0], [-2.0, -1.0], [-1.0, -3.0]])
    counts = torch.ones(4, 2, dtype=torch.long)
    policy, reference = SegmentLogps(sums, counts), SegmentLogps(torch.zeros(4, 2), counts.clone())
    loss = HiPOLoss(beta=0.5, weights=StagedWeights([[1.0, 0.0], [0.0, 1.0]], steps=[3]), segment_names=["Mt"])
    first = loss(policy, reference, fake_batch(4, 1))
    loss.set_step(3)
    second = loss(policy, reference, fake_batch(4, 1))
    assert first.metrics["weight/Mt"].item() == 1.0 and second.metrics["weight/Mt"].item() == 0.0
    assert first.loss.item() != pytest.approx(second.loss.item())


@pytest.mark.parametrize(
    "build",
    [
        lambda: DPOLoss(beta=0.5, segment_names=["Mt"]),
        lambda: KTOLoss(beta=0.5, segment_names=["Mt"]),
        lambda: HiPOLoss(beta=0.5, weights=FixedWeights([0.4, 0.6]), segment_names=["Mt"]),
        lambda: HiPOLoss(beta=0.5, weights=UncertaintyWeights(2, init_log_var=0.3), segment_names=["Mt"]),
    ],
    ids=["dpo", "kto", "hipo-fixed", "hipo-learned"],
)
def test_set_step_is_a_no_op_without_scheduled_weights(build) -> None:
    loss = build()
    state = {k: v.clone() for k, v in loss.state_dict().items()}
    weights = None if loss.weights is None else loss.weights().detach().clone()
    attributes = {k: v for k, v in vars(loss).items() if not k.startswith("_")}
    for step in (0, 5, 10_000):
        loss.set_step(step)
    assert {k: v for k, v in vars(loss).items() if not k.startswith("_")} == attributes
    assert loss.state_dict().keys() == state.keys()
    assert all(torch.equal(loss.state_dict()[k], v) for k, v in state.items())
    if weights is None:
        assert loss.weights is None
    else:
        assert loss.weights is not None and torch.equal(loss.weights().detach(), weights)


def test_segment_weights_base_set_step_is_a_no_op() -> None:
    weights = FixedWeights([0.25, 0.75])
    weights.set_step(123)
    assert weights().tolist() == [0.25, 0.75]


class _RecordingLoss(DPOLoss):
    """A DPO loss that records the steps the training loop reports."""

    def __init__(self) -> None:
        super().__init__(beta=0.375, segment_names=["Mt"])
        self.steps: list[int] = []

    def set_step(self, step: int) -> None:
        self.steps.append(step)
        super().set_step(step)


def test_the_training_loop_reports_the_step_and_reads_beta_through_the_interface(fake_batch, monkeypatch) -> None:
    loss = _RecordingLoss()
    counts = torch.ones(4, 2, dtype=torch.long)
    logps = SegmentLogps(torch.zeros(4, 2), counts)
    module = PreferenceModule(
        policy=nn.Linear(1, 1),
        loss=loss,
        reference=lambda batch: logps,
        segment_names=["Mt"],
        optim=OptimConfig(lr=1e-3, scheduler="constant"),
        policy_starts_as_reference=True,  # validation reuses the reference: no policy forward pass needed
    )
    zero = torch.zeros(())
    monkeypatch.setattr(module, "compute_loss", lambda batch: LossOutput(loss=zero, per_example=torch.zeros(2)))
    monkeypatch.setattr(PreferenceModule, "global_step", property(lambda self: 7))
    module.training_step(fake_batch(4, 1), 0)
    assert loss.steps == [7]

    seen: list[float] = []
    monkeypatch.setattr(module.held_out, "update", lambda policy, reference, beta, valid, pair_ids: seen.append(beta))
    module.policy_equals_reference = True
    module.validation_step(fake_batch(4, 1), 0)
    assert seen == [0.375]


def test_final_output_reads_the_current_weights_through_the_interface() -> None:
    from hipo.app.final_output import current_weights

    def module(loss: PreferenceLoss) -> PreferenceModule:
        return PreferenceModule(nn.Linear(1, 1), loss, lambda batch: None, ["Mt"], OptimConfig(lr=1e-3))

    assert current_weights(module(DPOLoss(segment_names=["Mt"]))) == {}
    assert current_weights(module(KTOLoss(segment_names=["Mt"]))) == {}
    staged = HiPOLoss(weights=StagedWeights([[1.0, 0.0], [0.25, 0.75]], steps=[2]), segment_names=["Mt"])
    trained = module(staged)
    assert current_weights(trained) == {"Mt": 1.0, "whole": 0.0}
    staged.set_step(2)
    assert current_weights(trained) == {"Mt": 0.25, "whole": 0.75}
