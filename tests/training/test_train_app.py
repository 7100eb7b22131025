"""`hipo train` end to end with the tiny model: every loss trains, is tracked in MLflow, and fails cleanly."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig
from safetensors.torch import load_file

from hipo.app import train as train_app
from hipo.data.row_errors import DataError
from hipo.training.module import PreferenceModule

pytestmark = pytest.mark.slow  # tiny-model `hipo train` runs into a fresh MLflow store


def _runs(cfg: DictConfig) -> list:
    client = MlflowClient(cfg.logger.tracking_uri)
    experiment = client.get_experiment_by_name(cfg.logger.experiment_name)
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


@pytest.fixture
def captured_modules(monkeypatch: pytest.MonkeyPatch) -> list[PreferenceModule]:
    """Every PreferenceModule built by `train`, with a snapshot of its parameters before training."""
    built: list[PreferenceModule] = []
    original = PreferenceModule.__init__

    def init(self: PreferenceModule, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        original(self, *args, **kwargs)
        self.initial_parameters = _snapshot(self)  # type: ignore[attr-defined]
        built.append(self)

    monkeypatch.setattr(PreferenceModule, "__init__", init)
    return built


@pytest.mark.parametrize("loss", ["dpo", "hipo", "kto", "hipo_kto"])
def test_each_loss_trains_and_writes_a_finished_mlflow_run(
    loss: str, tiny_cfg: Callable[..., DictConfig], captured_modules: list[PreferenceModule]
) -> None:
    cfg = tiny_cfg(f"loss={loss}")
    result = train_app.train(cfg)

    (run,) = _runs(cfg)
    assert run.info.run_id == result["run_id"] and run.info.status == "FINISHED"
    assert run.data.tags["hipo.loss"] == loss and run.data.tags["hipo.model"] == "tiny"
    assert run.data.tags["hipo.git_commit"]
    assert run.data.params["loss.beta"] == str(cfg.loss.beta)
    assert "train/loss" in run.data.metrics
    for term in ("Rq", "Mt", "Ra", "whole"):
        assert f"val_after/rewards/accuracy/{term}" in run.data.metrics
    if loss == "hipo":
        for segment in ("Rq", "Mt", "Ra"):
            assert f"train/rewards/margin/{segment}" in run.data.metrics
            assert f"train/rewards/accuracy/{segment}" in run.data.metrics
        assert "train/weight/Mt" in run.data.metrics
    if loss == "hipo_kto":
        assert {"train/weight/Mt", "train/kto/kl/Mt", "train/term_loss/whole"} <= set(run.data.metrics)
    history = MlflowClient(cfg.logger.tracking_uri).get_metric_history(run.info.run_id, "train/loss")
    assert len(history) == cfg.trainer.max_steps
    artifacts = {a.path for a in MlflowClient(cfg.logger.tracking_uri).list_artifacts(run.info.run_id, "config")}
    assert "config/resolved.yaml" in artifacts

    # the policy moved; the reference (a frozen copy outside the module's parameters) did not
    (module,) = captured_modules
    before, after = module.initial_parameters, _snapshot(module)  # type: ignore[attr-defined]
    assert any(not torch.equal(before[n], after[n]) for n in before)
    assert (Path(result["output_dir"]) / "final" / "hipo.json").exists()


def test_lora_trains_only_the_adapter(tiny_cfg: Callable[..., DictConfig], captured_modules: list) -> None:
    train_app.train(tiny_cfg("model.lora.enabled=true", "model.lora.r=4"))
    (module,) = captured_modules
    before, after = module.initial_parameters, _snapshot(module)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and all("lora_" in n for n in changed)


def test_fresh_lora_policy_equals_its_reference(tiny_cfg: Callable[..., DictConfig]) -> None:
    """What lets validation before training skip the policy pass (policy_starts_as_reference)."""
    from hipo.app.builders import build_datamodule, build_policy

    cfg = tiny_cfg("model.lora.enabled=true")
    bundle = build_policy(cfg.model)
    datamodule = build_datamodule(cfg, bundle.tokenizer, paired=True)
    datamodule.setup("fit")
    batch = next(iter(datamodule.val_dataloader()))
    from hipo.models.logprobs import sequence_segment_logps

    policy = sequence_segment_logps(bundle.policy, batch)
    reference = bundle.reference.segment_logps(batch)
    torch.testing.assert_close(policy.sums, reference.sums)


def test_learned_weights_are_parameters_that_move(
    tiny_cfg: Callable[..., DictConfig], captured_modules: list[PreferenceModule]
) -> None:
    cfg = tiny_cfg("loss=hipo", "loss/weights=learned", "optim.weights_lr=0.1")
    result = train_app.train(cfg)
    (module,) = captured_modules
    names = [n for n, p in module.named_parameters() if n.startswith("loss_fn.weights")]
    assert names, "learned weights must be parameters of the LightningModule"
    assert all(not torch.equal(module.initial_parameters[n], dict(module.named_parameters())[n]) for n in names)
    (run,) = _runs(cfg)
    history = MlflowClient(cfg.logger.tracking_uri).get_metric_history(run.info.run_id, "train/weight/Mt")
    assert len({m.value for m in history}) > 1
    assert Path(result["output_dir"], "final", "hipo.json").read_text().count("Mt") >= 1


def test_malformed_data_fails_before_any_run_exists(tiny_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"prompt": "1+1?", "chosen": "2", "rejected": "3"}\n{"prompt": "2+2?", "chosen": \n')
    cfg = tiny_cfg("data=jsonl", f"data.path={bad}", "segmenter=rules")
    with pytest.raises(DataError) as excinfo:
        train_app.train(cfg)
    assert "pairs.jsonl:2:" in str(excinfo.value)  # file and line number
    assert _runs(cfg) == []


def test_a_crash_leaves_a_failed_run_and_a_checkpoint_that_resumes(
    tiny_cfg: Callable[..., DictConfig], crash_at_step: Callable[[int | None], None]
) -> None:
    cfg = tiny_cfg("trainer.max_steps=4", "trainer.checkpoint_every_n_steps=2")
    reference = train_app.train(cfg)  # the same run without a crash, for the end state
    uninterrupted = {
        k: v.clone() for k, v in load_file(Path(reference["output_dir"]) / "final" / "model.safetensors").items()
    }
    shutil.rmtree(reference["output_dir"])
    MlflowClient(cfg.logger.tracking_uri).delete_experiment(_runs(cfg)[0].info.experiment_id)
    cfg = tiny_cfg("trainer.max_steps=4", "trainer.checkpoint_every_n_steps=2", "logger.experiment_name=crash")
    crash_at_step(3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_app.train(cfg)
    (failed,) = _runs(cfg)
    assert failed.info.status == "FAILED"
    checkpoints = Path(cfg.output_dir) / "checkpoints"
    assert (checkpoints / "last.ckpt").exists() or list(checkpoints.glob("*.ckpt"))

    assert "RuntimeError: simulated crash" in failed.data.tags["hipo.error"]
    checkpoint = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == 3  # the crash came before step 4 changed anything: a consistent state

    crash_at_step(None)
    resumed_cfg = tiny_cfg("trainer.max_steps=4", "trainer.checkpoint_every_n_steps=2", "resume=auto")
    result = train_app.train(resumed_cfg)
    (run,) = _runs(cfg)  # the resumed job continues the crashed job's run
    assert run.info.run_id == failed.info.run_id == result["run_id"] and run.info.status == "FINISHED"
    history = MlflowClient(cfg.logger.tracking_uri).get_metric_history(result["run_id"], "train/loss")
    assert [m.step for m in history] == [0, 1, 2, 3]  # steps 0-2 from the crashed job, step 3 from the resumed one
    resumed = load_file(Path(result["output_dir"]) / "final" / "model.safetensors")
    assert all(torch.equal(resumed[k], v) for k, v in uninterrupted.items())  # ends where the uninterrupted run ends


@pytest.mark.parametrize("train_pairs", [12, 24])  # 12 = 3 steps x 4: fit's epoch-end validation is the last step
def test_held_out_pairs_are_written_and_scored_once_after_training(
    train_pairs: int, tiny_cfg: Callable[..., DictConfig], captured_modules: list[PreferenceModule]
) -> None:
    cfg = tiny_cfg(f"data.source.num_pairs={train_pairs}")
    result = train_app.train(cfg)
    (module,) = captured_modules
    # before training, then once at step 3: by fit's epoch end (12 pairs) or by the explicit pass (24), not both
    assert module.held_out_steps == [0, 3] and len(module.held_out_results) == 2
    pairs = (Path(result["output_dir"]) / "held_out" / "pairs.csv").read_text().splitlines()
    assert pairs[0] == "pair,margin/Rq,margin/Mt,margin/Ra,margin/whole" and len(pairs) == 1 + 8
    whole = [float(line.split(",")[4]) for line in pairs[1:]]
    assert sum(whole) / len(whole) == pytest.approx(result["val_after"]["rewards/margin/whole"], rel=1e-9)
    (run,) = _runs(cfg)
    listed = {a.path for a in MlflowClient(cfg.logger.tracking_uri).list_artifacts(run.info.run_id, "held_out")}
    assert listed == {"held_out/pairs.csv"}
