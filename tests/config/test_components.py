"""Component nodes (``_target_``) are checked against their constructors: no hand-written schema, one clear line."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf, open_dict

from hipo.config.components import check_components, constructor_schema, import_target
from hipo.config.compose import compose_config
from hipo.errors import ConfigError

CONF = Path(__file__).resolve().parents[2] / "conf"
RUNTIME_ARGUMENTS = {"weights", "decomposer", "client"}  # child components, composed from their own YAML nodes


def _component_files() -> list[Path]:
    """Every YAML under conf/ whose top level builds an object."""
    return [path for path in sorted(CONF.rglob("*.yaml")) if "_target_" in OmegaConf.load(path)]


@pytest.mark.parametrize("path", _component_files(), ids=lambda p: str(p.relative_to(CONF)))
def test_each_component_yaml_lists_every_constructor_argument(path: Path) -> None:
    """The YAML is the component's documentation: every parameter is visible and overridable without ``+``."""
    node = OmegaConf.load(path)
    target = import_target(str(node._target_), where=str(path))
    parameters = set(inspect.signature(target).parameters) - RUNTIME_ARGUMENTS
    listed = {key for key in node if not str(key).startswith("_") and key not in ("name", "defaults")}
    listed -= RUNTIME_ARGUMENTS
    assert parameters - listed == set(), f"{path}: parameters missing from the YAML"
    assert listed - parameters == set(), f"{path}: keys that are not parameters"


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["segmenter=llm"],
        ["segmenter=tags"],
        ["segmenter=rules"],
        ["loss=kto"],
        ["loss=dpo"],
        ["loss/weights=staged"],
        ["loss/weights=learned"],
        ["loss/weights=softmax_floor"],
        ["data=jsonl", "data.path=x"],
        ["data=math_stackexchange"],
        ["experiment=paper_qwen2.5_7b"],
    ],
)
def test_every_shipped_config_passes_the_check(overrides: list[str]) -> None:
    check_components(compose_config(overrides))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["segmenter=rules", "segmenter.answer_window=abc"],
            "segmenter.answer_window='abc': expected int (parameter of hipo.data.segmenters.RulesSegmenter)",
        ),
        (["loss.weights.values=[0.5,x]"], "loss.weights.values[1]: Value 'x' of type 'str' could not be converted"),
        (["segmenter._target_=nowhere.Segmenter"], "segmenter._target_=nowhere.Segmenter: cannot import nowhere"),
        (["segmenter._target_=hipo.data.segmenters.Nope"], "module hipo.data.segmenters has no 'Nope'"),
        (
            ["segmenter=llm", "segmenter.decomposer.client.timeout_s=soon"],
            "segmenter.decomposer.client.timeout_s='soon': expected float (parameter of hipo.llm.client.ChatClient)",
        ),
        (["data.source.num_pairs=many"], "data.source.num_pairs='many': expected int"),
    ],
)
def test_a_wrong_value_is_named_by_its_config_path(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        check_components(compose_config(overrides))
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_an_unknown_key_lists_the_constructors_parameters() -> None:
    cfg = compose_config(["segmenter=rules"])
    with open_dict(cfg):
        cfg.segmenter.answer_windw = 3  # what a typo in a YAML file merges to
    with pytest.raises(
        ConfigError,
        match=r"segmenter\.answer_windw: not a parameter of .*RulesSegmenter "
        r"\(its parameters: segments, answer_window, min_paragraphs",
    ):
        check_components(cfg)


def test_labels_and_constructors_taking_any_keyword_are_accepted() -> None:
    cfg = OmegaConf.create({"thing": {"_target_": f"{__name__}.takes_anything", "name": "label", "any": 1}})
    check_components(cfg)  # every keyword is an argument of takes_anything(**options)
    cfg = OmegaConf.create({"thing": {"_target_": "builtins.dict", "x": 1}})
    check_components(cfg)  # no signature to check against: left to the constructor


def takes_anything(**options: object) -> dict[str, object]:
    return options


def test_generated_schema_types_follow_the_annotations() -> None:
    from hipo.data.segmenters import TagsSegmenter

    fields = {f.name: f.type for f in dataclasses.fields(constructor_schema(TagsSegmenter))}
    assert fields["segments"] == list[str]  # Sequence[str]
    assert fields["fallback_segment"] == str | None
    assert fields["aliases"] == dict[str, Any] | None  # Mapping[str, Sequence[str]] | None: values not checked here
