"""What `hipo train` saves is what `hipo eval checkpoint=...` loads: the adapter folder and the Lightning checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from hipo.app import train as train_app
from hipo.app.eval_model import load_for_eval
from hipo.config.compose import compose_config
from hipo.training.module import PreferenceModule

pytestmark = pytest.mark.slow  # a tiny-model `hipo train` run per test


def _lora_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n.replace(".default", ""): p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


@pytest.fixture
def trained(tiny_cfg: Callable[..., DictConfig], monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict]:
    built: list[PreferenceModule] = []
    original = PreferenceModule.__init__

    def init(self: PreferenceModule, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        original(self, *args, **kwargs)
        built.append(self)

    monkeypatch.setattr(PreferenceModule, "__init__", init)
    cfg = tiny_cfg("model.lora.enabled=true", "model.lora.r=4", "trainer.checkpoint_every_n_steps=3")
    result = train_app.train(cfg)
    return Path(result["output_dir"]), _lora_tensors(built[0].policy)


@pytest.mark.parametrize("which", ["final", "checkpoints/last.ckpt"])
def test_eval_loads_exactly_the_trained_adapter(trained: tuple[Path, dict], which: str) -> None:
    output_dir, expected = trained
    overrides = ["model=tiny", "model.lora.r=4", f"checkpoint={output_dir / which}"]
    if which.endswith(".ckpt"):  # a Lightning checkpoint is loaded onto the model built as in training
        overrides.append("model.lora.enabled=true")
    model, _, description = load_for_eval(compose_config(overrides, config_name="eval"))
    loaded = _lora_tensors(model)
    assert loaded.keys() == expected.keys() and expected
    for name, tensor in expected.items():
        torch.testing.assert_close(loaded[name], tensor, msg=name)
    assert any(torch.count_nonzero(t) for n, t in expected.items() if "lora_B" in n)  # training moved B off 0
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert str(output_dir) in description
