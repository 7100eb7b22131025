"""The Trainer, its callbacks and the data module are built from their config nodes (``_target_``), with no argument
list copied by hand: a new argument in the config reaches the constructor (issue 13)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import pytest
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, Timer
from omegaconf import DictConfig, OmegaConf

from hipo.app.builders import build_datamodule
from hipo.app.lightning_trainer import build_trainer
from hipo.config.schema import DataConfig, TrainerConfig
from hipo.data.datamodule import PreferenceDataModule
from hipo.tracking.params import flatten_config
from hipo.training.checkpoints import AtomicCheckpointIO
from hipo.training.exact_resume import ExactResume
from hipo.training.preemption import StopAtStepBoundary, StopRequests
from hipo.training.progress import step_progress_bar


def _cfg(tmp_path: Path, *overrides: str) -> DictConfig:
    from hipo.config.compose import compose_config

    base = ["model=tiny", "trainer.accelerator=cpu", "trainer.precision=32-true", f"output_dir={tmp_path}"]
    return compose_config([*base, *overrides])


def _trainer(cfg: DictConfig) -> tuple[L.Trainer, StopRequests]:
    with StopRequests().installed() as requests:
        return build_trainer(cfg, False, devices_per_node=1), requests


def _ours(trainer: L.Trainer) -> list[Any]:
    """The trainer's callbacks that come from ``trainer.callbacks`` (Lightning adds its own, e.g. a model summary)."""
    kinds = (ExactResume, StopAtStepBoundary, LearningRateMonitor, ModelCheckpoint, Timer, type(step_progress_bar()))
    return [c for c in trainer.callbacks if isinstance(c, kinds)]


def _recording_trainer(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Makes ``lightning.pytorch.Trainer`` (the node's ``_target_``) record the arguments it is built with."""
    import lightning.pytorch

    received: dict[str, Any] = {}

    class RecordingTrainer(L.Trainer):
        def __init__(self, **kwargs: Any) -> None:
            received.update(kwargs)
            super().__init__(**{k: v for k, v in kwargs.items() if k != "benchmark"})  # no global cudnn flag

    monkeypatch.setattr(lightning.pytorch, "Trainer", RecordingTrainer)
    return received


@pytest.mark.slow  # composes the config
def test_default_callbacks_are_the_jobs_in_order_with_the_same_settings(tmp_path: Path) -> None:
    trainer, requests = _trainer(_cfg(tmp_path, "trainer.checkpoint_every_n_steps=5"))
    exact, stop, lr, bar, checkpoint = _ours(trainer)  # Lightning moves checkpoint callbacks last
    assert (type(exact), type(stop), type(lr), type(bar)) == (
        ExactResume,
        StopAtStepBoundary,
        LearningRateMonitor,
        type(step_progress_bar()),
    )
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert exact.crash_checkpoint == last and stop.checkpoint_path == last
    assert stop.requests is requests  # the job's stop requests, read where the Trainer is built
    assert lr.logging_interval == "step"
    expected = ModelCheckpoint(
        dirpath=tmp_path / "checkpoints",
        save_last=True,
        save_top_k=0,
        every_n_train_steps=5,
        enable_version_counter=False,
    )
    assert checkpoint.state_key == expected.state_key  # what a checkpoint's callback state is stored under
    assert (checkpoint.dirpath, checkpoint.save_last, checkpoint.save_top_k) == (str(tmp_path / "checkpoints"), True, 0)
    assert checkpoint._enable_version_counter is False
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    assert trainer.default_root_dir == str(tmp_path)


@pytest.mark.slow  # composes the config
def test_checkpoint_every_0_steps_is_lightnings_none(tmp_path: Path) -> None:
    trainer, _ = _trainer(_cfg(tmp_path, "trainer.checkpoint_every_n_steps=0"))
    checkpoint = trainer.checkpoint_callback
    assert isinstance(checkpoint, ModelCheckpoint)
    none = ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0, every_n_train_steps=None)
    assert (checkpoint._every_n_train_steps, checkpoint.every_n_epochs) == (0, 1)
    assert checkpoint.state_key == none.state_key


@pytest.mark.slow  # composes the config
def test_callbacks_are_dropped_with_null_and_added_by_name(tmp_path: Path) -> None:
    cfg = _cfg(
        tmp_path,
        "trainer.callbacks.lr_monitor=null",
        "+trainer.callbacks.timer={_target_: lightning.pytorch.callbacks.Timer, duration: '00:01:00:00'}",
        "trainer.enable_progress_bar=false",  # the bar node builds to nothing
    )
    trainer, _ = _trainer(cfg)
    assert [type(c) for c in _ours(trainer)] == [ExactResume, StopAtStepBoundary, Timer, ModelCheckpoint]
    assert trainer.progress_bar_callback is None
    params = flatten_config(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    assert (
        params["trainer.callbacks"]
        == "['exact_resume', 'stop_at_step_boundary', 'last_checkpoint', 'progress_bar', 'timer']"
    )
    assert not [key for key in params if key.startswith("trainer.callbacks.")]  # one param, not one per setting


@pytest.mark.slow  # composes the config
def test_a_trainer_argument_added_on_the_command_line_reaches_the_trainer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    received = _recording_trainer(monkeypatch)
    _trainer(_cfg(tmp_path, "+trainer.benchmark=true", "trainer.max_steps=7"))
    assert received["benchmark"] is True and received["max_steps"] == 7
    for key in TrainerConfig.CONFIG_ONLY_KEYS:
        assert key not in received
    assert received["use_distributed_sampler"] is False and received["enable_model_summary"] is False
    assert received["strategy"] == "auto" and received["default_root_dir"] == str(tmp_path)


@dataclass
class _TrainerConfigWithBenchmark(TrainerConfig):
    benchmark: bool = True  # a field added to the schema


@pytest.mark.slow  # composes the config
def test_a_trainer_argument_added_to_the_schema_reaches_the_trainer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    received = _recording_trainer(monkeypatch)
    cfg = _cfg(tmp_path)
    cfg.trainer = OmegaConf.merge(
        OmegaConf.structured(_TrainerConfigWithBenchmark), OmegaConf.to_container(cfg.trainer)
    )
    _trainer(cfg)
    assert received["benchmark"] is True


def test_the_stop_callback_reads_the_installed_stop_requests(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no StopRequests installed"):
        StopAtStepBoundary(tmp_path / "last.ckpt")
    with StopRequests().installed() as outer:
        with StopRequests().installed() as inner:
            assert StopAtStepBoundary(str(tmp_path / "last.ckpt")).requests is inner
        assert StopRequests.current() is outer
    with pytest.raises(RuntimeError):
        StopRequests.current()


def test_params_keep_one_value_for_the_named_callbacks() -> None:
    config = {
        "trainer": {
            "_target_": "lightning.pytorch.Trainer",
            "max_steps": 3,
            "callbacks": {"a": {"_target_": "x.A", "path": "/p"}, "b": None, "c": {"_target_": "x.C"}},
        },
        "loss": {"_target_": "hipo.losses.HiPOLoss", "beta": 0.1},
    }
    assert flatten_config(config) == {
        "trainer._target_": "lightning.pytorch.Trainer",
        "trainer.max_steps": "3",
        "trainer.callbacks": "['a', 'c']",
        "loss._target_": "hipo.losses.HiPOLoss",
        "loss.beta": "0.1",
    }


class _FlavouredDataModule(PreferenceDataModule):
    """A data module with one more constructor argument."""

    def __init__(self, *args: Any, flavour: str = "plain", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flavour = flavour


@dataclass
class _DataConfigWithFlavour(DataConfig):
    flavour: str = "salted"  # a field added to the schema


@pytest.mark.slow  # composes the config, loads a tokenizer
@pytest.mark.parametrize("added_to", ["command_line", "schema"])
def test_a_data_module_argument_added_to_the_config_reaches_the_constructor(
    added_to: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smollm2_tokenizer: Any
) -> None:
    import hipo.data.datamodule

    monkeypatch.setattr(hipo.data.datamodule, "PreferenceDataModule", _FlavouredDataModule)  # the node's _target_
    if added_to == "command_line":
        cfg = _cfg(tmp_path, "+data.flavour=salted", "data.batch_size=3", "seed=5")
    else:
        cfg = _cfg(tmp_path, "data.batch_size=3", "seed=5")
        cfg.data = OmegaConf.merge(OmegaConf.structured(_DataConfigWithFlavour), OmegaConf.to_container(cfg.data))
    module = build_datamodule(cfg, smollm2_tokenizer, paired=False)
    assert isinstance(module, _FlavouredDataModule) and module.flavour == "salted"
    assert (module.batch_size, module.seed, module.paired, module.eval_batch_size) == (3, 5, False, 16)
    assert module.segmenter.segments == ("Rq", "Mt", "Ra") and module.tokenizer is smollm2_tokenizer
    assert module.val_source is not None and module.val_source.split == "validation"  # nested nodes are built


@pytest.mark.slow  # composes the config
def test_a_bad_source_setting_names_the_data_group(tmp_path: Path, smollm2_tokenizer: Any) -> None:
    from hipo.errors import ConfigError

    cfg = _cfg(tmp_path, "data=jsonl", f"data.path={tmp_path / 'missing.jsonl'}", "segmenter=tags")
    with pytest.raises(ConfigError, match=r"^data: "):
        build_datamodule(cfg, smollm2_tokenizer, paired=True)


@pytest.mark.slow  # composes the config
def test_the_phase_1_check_knows_the_config_only_keys_and_names_a_misspelled_argument(tmp_path: Path) -> None:
    from hipo.config.components import check_components
    from hipo.errors import ConfigError

    check_components(_cfg(tmp_path, "+trainer.benchmark=true", "data=jsonl", "data.path=x.jsonl", "segmenter=tags"))
    with pytest.raises(ConfigError, match=r"^trainer\.benchmrk: not a parameter of lightning\.pytorch\.Trainer"):
        check_components(_cfg(tmp_path, "+trainer.benchmrk=true"))
    with pytest.raises(ConfigError, match=r"^trainer\.callbacks\.lr_monitor\.logging_intervl: not a parameter"):
        check_components(_cfg(tmp_path, "+trainer.callbacks.lr_monitor.logging_intervl=step"))
