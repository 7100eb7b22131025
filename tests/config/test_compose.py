"""Every config in conf/ composes against its schema, and its components instantiate."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from hipo.app.builders import instantiate_component
from hipo.config.components import check_components
from hipo.config.compose import compose_config
from hipo.errors import ConfigError

CONF = Path(__file__).resolve().parents[2] / "conf"


REQUIRED = {"data=jsonl": ["data.path=pairs.jsonl"]}  # options with a mandatory value


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _compose(overrides: list[str], config_name: str = "config"):
    return compose_config(overrides, config_name)


@pytest.mark.slow  # composes every option of the group
@pytest.mark.parametrize("group", ["model", "loss", "data", "segmenter", "trainer", "logger"])
def test_every_option_of_group_composes(group: str) -> None:
    options = _options(group)
    assert options, f"conf/{group} is empty"
    for option in options:
        cfg = _compose([f"{group}={option}", *REQUIRED.get(f"{group}={option}", [])])
        OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


@pytest.mark.slow  # a composition per option
@pytest.mark.parametrize("weights", _options("loss/weights"))
def test_every_weight_option_instantiates_with_the_right_length(weights: str) -> None:
    cfg = _compose(["loss=hipo", f"loss/weights={weights}"])
    loss = instantiate_component(cfg.loss)
    assert loss.weights().shape == (len(cfg.segments) + 1,)


@pytest.mark.slow  # a composition per option
@pytest.mark.parametrize("loss", _options("loss"))
def test_every_loss_instantiates(loss: str) -> None:
    cfg = _compose([f"loss={loss}"])
    module = instantiate_component(cfg.loss)
    assert isinstance(module.paired, bool)


@pytest.mark.slow  # a composition per option
@pytest.mark.parametrize("segmenter", _options("segmenter"))
def test_every_segmenter_instantiates(segmenter: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")  # the llm segmenter refuses api.openai.com without a key
    cfg = _compose([f"segmenter={segmenter}"])
    instantiate_component(cfg.segmenter)


@pytest.mark.slow  # a composition per option
@pytest.mark.parametrize("experiment", _options("experiment"))
def test_every_experiment_composes(experiment: str) -> None:
    cfg = _compose([f"experiment={experiment}"])
    OmegaConf.to_container(cfg, resolve=False)
    instantiate_component(cfg.loss)


def test_misspelled_key_names_the_key() -> None:
    with pytest.raises((ConfigCompositionException, ConfigKeyError)) as excinfo:
        _compose(["loss.bta=0.3"])
    assert "bta" in str(excinfo.value) or "bta" in str(excinfo.value.__cause__)


def test_misspelled_nested_key_in_model_names_the_key() -> None:
    with pytest.raises((ConfigCompositionException, ConfigKeyError)) as excinfo:
        _compose(["model.lora.rank=8"])
    assert "rank" in str(excinfo.value) or "rank" in str(excinfo.value.__cause__)


def test_wrong_type_is_rejected() -> None:
    with pytest.raises((ConfigCompositionException, ValidationError)) as excinfo:
        _compose(["trainer.max_steps=many"])
    assert "max_steps" in str(excinfo.value) or "max_steps" in str(excinfo.value.__cause__)


def test_paper_weights_are_the_default() -> None:
    cfg = _compose([])
    assert list(cfg.loss.weights["values"]) == [0.25, 0.25, 0.20, 0.30]
    assert cfg.loss.beta == 0.2


def test_jsonl_data_without_a_path_fails_naming_the_key() -> None:
    cfg = _compose(["data=jsonl"])
    with pytest.raises(ConfigError, match=r"data\.source\.path=None: expected str \(parameter of .*JsonlSource\)"):
        check_components(cfg)  # what every command runs before anything loads


@pytest.mark.slow  # a composition per option
@pytest.mark.parametrize(
    ("experiment", "hub_id"),
    [("paper_qwen2.5_7b", "Qwen/Qwen2.5-7B-Instruct"), ("paper_llama3.1_8b", "meta-llama/Llama-3.1-8B-Instruct")],
)
def test_paper_configs_name_the_paper_setup(experiment: str, hub_id: str) -> None:
    cfg = _compose([f"experiment={experiment}"])
    assert cfg.model.name_or_path == hub_id
    assert cfg.data.source.dataset_id == "prhegde/preference-data-math-stack-exchange"
    assert cfg.segmenter._target_.endswith("LLMSegmenter")
    assert cfg.loss.beta == 0.2 and list(cfg.loss.weights["values"]) == [0.25, 0.25, 0.20, 0.30]
    assert sorted(cfg.benchmark) == sorted(["gsm8k", "math500", "minerva_math", "aime24", "gaokao2023en"])
    assert cfg.evaluate.enabled and cfg.evaluate.judge.enabled and cfg.evaluate.judge.client.model == "gpt-4.1"
    assert not cfg.evaluate.generation.do_sample  # greedy, the same for every method


def _hydra_node(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from hipo.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True).hydra


@pytest.mark.slow  # a composition per option
@pytest.mark.parametrize(
    ("override", "target"),
    [
        ("hydra/launcher=parallel", "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"),
        ("hydra/launcher=slurm", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
        ("hydra/sweeper=tune", "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"),
    ],
)
def test_launcher_and_sweeper_configs_compose(override: str, target: str) -> None:
    node = _hydra_node([override])
    group = "launcher" if "launcher" in override else "sweeper"
    assert node[group]._target_ == target


@pytest.mark.slow  # several compositions
def test_tuning_experiment_samples_weights_through_tune_variables() -> None:
    node = _hydra_node(["experiment=tune_hipo"])
    assert node.sweeper._target_.endswith("OptunaSweeper")
    assert "loss.beta" in node.sweeper.params and "tune.w_mt" in node.sweeper.params
    cfg = _compose(["experiment=tune_hipo", "tune.w_mt=0.7"])
    assert cfg.objective == "val_after/rewards/accuracy/whole"
    assert instantiate_component(cfg.loss).weights().tolist() == pytest.approx([0.25, 0.7, 0.2, 0.3])


METHOD_PRESETS = [  # (preset, loss class, weights class)
    ("dpo", "DPOLoss", None),
    ("dpo_beta0.2", "DPOLoss", None),
    ("hipo", "HiPOLoss", "FixedWeights"),
    ("hipo_learned", "HiPOLoss", "UncertaintyWeights"),
    ("hipo_staged", "HiPOLoss", "StagedWeights"),
    ("kto", "KTOLoss", None),
    ("hipo_kto", "SegmentKTOLoss", "FixedWeights"),
    ("hipo_mt_only", "HiPOLoss", "FixedWeights"),
    ("hipo_learned_fast", "HiPOLoss", "UncertaintyWeights"),
    ("dpo_beta0.2_replica", "DPOLoss", None),
    ("sft", "SFTLoss", None),
    ("dpo_nll", "DPOLoss", None),
    ("hipo_nll", "HiPOLoss", "FixedWeights"),
    ("hipo_learned_nll", "HiPOLoss", "UncertaintyWeights"),
]


def test_every_method_preset_is_checked() -> None:
    assert sorted(m for m, _, _ in METHOD_PRESETS) == _options("method")


@pytest.mark.slow  # a composition per option
@pytest.mark.parametrize(("method", "loss_target", "weights_target"), METHOD_PRESETS)
def test_method_presets_select_loss_and_weights(method: str, loss_target: str, weights_target: str | None) -> None:
    cfg = _compose([f"method={method}"])
    assert cfg.loss._target_.endswith(loss_target)
    assert (cfg.loss.get("weights") or {}).get("_target_", "").endswith(weights_target or "")
    assert cfg.method


@pytest.mark.slow  # two compositions
def test_the_nll_presets_are_their_methods_plus_the_nll_term() -> None:
    for preset, base in (("dpo_nll", "dpo"), ("hipo_nll", "hipo"), ("hipo_learned_nll", "hipo_learned")):
        with_nll = OmegaConf.to_container(_compose([f"method={preset}"]), resolve=False)
        plain = OmegaConf.to_container(_compose([f"method={base}"]), resolve=False)
        assert isinstance(with_nll, dict) and isinstance(plain, dict)
        assert with_nll["loss"].pop("nll_weight") == 1.0 and plain["loss"].pop("nll_weight") is None
        assert with_nll.pop("method") == f"{plain.pop('method')}-nll" and with_nll == plain


@pytest.mark.slow  # two compositions
def test_the_negative_control_replica_is_dpo_beta02_but_for_its_label() -> None:
    replica = OmegaConf.to_container(_compose(["method=dpo_beta0.2_replica"]), resolve=False)
    original = OmegaConf.to_container(_compose(["method=dpo_beta0.2"]), resolve=False)
    assert isinstance(replica, dict) and isinstance(original, dict)
    assert (replica.pop("method"), original.pop("method")) == ("dpo-beta0.2-replica", "dpo-beta0.2")
    assert replica == original
    assert _compose(["method=hipo_learned_fast"]).optim.weights_lr == 0.3


@pytest.mark.slow  # several compositions
def test_weight_ablation_labels_each_run_by_its_weights() -> None:
    from hipo.app.builders import method_label

    cfg = _compose(["experiment=ablation_weights", "loss/weights=mt_only"])
    assert method_label(cfg, {"loss/weights": "mt_only"}) == "hipo-mt_only"  # a pinned `method` would merge them


@pytest.mark.slow  # a composition per case
@pytest.mark.parametrize(("max_steps", "expected"), [(40, [10, 10, 10]), (24, [6, 6, 6]), (10, [3, 3, 2])])
def test_staged_weights_split_the_run_into_four_stages(max_steps: int, expected: list[int]) -> None:
    cfg = _compose(["loss/weights=staged", f"trainer.max_steps={max_steps}"])
    assert list(cfg.loss.weights.steps) == expected
    weights = instantiate_component(cfg.loss).weights
    weights.set_step(max_steps - 1)
    assert weights().tolist() == pytest.approx([0.25, 0.25, 0.20, 0.30])  # the last stage is reached
