"""An experiment is named by its file: ``experiment=NAME`` makes ``cfg.experiment`` (the ``hipo.experiment`` tag
that ``hipo report experiment=NAME`` selects) and the MLflow experiment NAME, through ``${hipo.choice:experiment}``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate

from hipo.cli import config_dir
from hipo.config import register_configs
from hipo.config.compose import compose_config

# (cfg.experiment, logger.experiment_name) of each experiment, as the files stated them before they were derived
NAMES = {
    "ablation_segmenter": ("ablation_segmenter", "ablation_segmenter"),
    "ablation_weights": ("ablation_weights", "ablation_weights"),
    "control_positive": ("control_positive", "control_positive"),
    "control_saturation": ("control_saturation", "control_saturation"),
    "demo": ("demo", "demo"),
    "iterate_smoke": ("iterate_smoke", "iterate_smoke"),
    "onpolicy_cpu": ("onpolicy_cpu", "onpolicy_cpu"),
    "onpolicy_sft": ("onpolicy_sft", "onpolicy_sft"),
    "paper_llama3.1_8b": ("paper_llama3.1_8b", "paper_llama3.1_8b"),
    "paper_qwen2.5_7b": ("paper_qwen2.5_7b", "paper_qwen2.5_7b"),
    "pipeline_smoke": ("pipeline_smoke", "pipeline_smoke"),
    "study_cpu": ("study_cpu", "study_cpu"),
    "tune_hipo": ("tune_hipo", "tune_hipo"),
}


def test_every_experiment_file_is_listed() -> None:
    assert sorted(p.stem for p in (Path(config_dir()) / "experiment").glob("*.yaml")) == sorted(NAMES)


@pytest.mark.slow  # a composition per experiment
@pytest.mark.parametrize(("experiment", "names"), sorted(NAMES.items()))
def test_experiment_and_mlflow_names_stay_what_they_were(experiment: str, names: tuple[str, str]) -> None:
    cfg = compose_config([f"experiment={experiment}"])
    assert (cfg.experiment, cfg.logger.experiment_name) == names
    assert Path(cfg.output_dir).parts[0] == "outputs"


@pytest.mark.slow  # a composition per method
@pytest.mark.parametrize("method", ["dpo", "hipo", "hipo_learned_fast", "hipo_mt_only", "kto", "hipo_kto"])
def test_control_saturation_runs_every_method_at_one_beta_on_its_two_answer_modes(method: str) -> None:
    """The experiment sets beta after the method (DPO and KTO default to 0.1, HiPO to 0.2): no difference between
    the arms is a beta one. Training pairs end in a contradicting answer, the probe pairs in the propagated one."""
    cfg = compose_config(["experiment=control_saturation", f"method={method}"])
    assert cfg.loss.beta == 0.5
    assert (cfg.data.source.mt_error_answer, cfg.data.val_source.mt_error_answer) == ("contradicting", "propagated")


@pytest.mark.slow  # a composition per method
@pytest.mark.parametrize("method", ["dpo", "dpo_nll", "hipo", "hipo_nll", "hipo_learned", "hipo_learned_nll"])
def test_onpolicy_cpu_runs_every_arm_at_one_beta_from_the_sft_adapter(method: str) -> None:
    """Every arm of the on-policy study at beta 0.2, the NLL term exactly where the method's name says, the SFT
    adapter and the pairs file required, and the SFT run's evaluation prompt (the question alone)."""
    cfg = compose_config(["experiment=onpolicy_cpu", f"method={method}", "model.adapter_path=a", "data.path=p"])
    assert cfg.loss.beta == 0.2 and cfg.loss.nll_weight == (1.0 if method.endswith("_nll") else None)
    sft = compose_config(["experiment=onpolicy_sft"])
    assert cfg.evaluate.generation.prompt_template == sft.evaluate.generation.prompt_template == "{question}"
    assert cfg.evaluate.limit == sft.evaluate.limit == 300 and list(cfg.benchmark) == list(sft.benchmark)
    assert cfg.segmenter.name == sft.segmenter.name == "tags"


def test_without_an_experiment_runs_go_to_the_hipo_experiment() -> None:
    cfg = compose_config([])
    assert cfg.experiment is None and cfg.logger.experiment_name == "hipo"


@pytest.mark.slow  # several compositions
def test_an_explicit_mlflow_experiment_wins() -> None:
    cfg = compose_config(["experiment=demo", "logger.experiment_name=mine"])
    assert (cfg.experiment, cfg.logger.experiment_name) == ("demo", "mine")


@pytest.mark.slow  # a composition per case
@pytest.mark.parametrize("experiment", ["study_cpu", None])
def test_sweep_callback_is_built_before_hydra_config_is_set(experiment: str | None, monkeypatch) -> None:
    """Hydra instantiates its callbacks from the whole config before ``HydraConfig`` exists (run and multirun)."""
    register_configs()
    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)
    overrides = [f"experiment={experiment}"] if experiment else []
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    assert not HydraConfig.initialized()
    callback = instantiate(cfg.hydra.callbacks.mlflow_sweep)
    assert callback.experiment_name == (experiment or "hipo")
