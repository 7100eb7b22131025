"""The README's recipe, proven: a segmenter, a loss, a weight scheme and a benchmark added from a package outside
hipo by one class (or spec) and one YAML file each, with no edit to hipo's code or conf/."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from hipo.app.builders import build_segmenter, instantiate_component
from hipo.app.eval_command import load_benchmarks
from hipo.config.components import check_components
from hipo.config.compose import compose_config
from hipo.data.data_stats import DataStats
from hipo.data.row_errors import RowLocation
from hipo.data.segmenters.base import segment_rows
from hipo.errors import ConfigError
from hipo.losses.modules import DPOLoss
from hipo.losses.types import SegmentLogps
from tests.helpers.cli_runs import HELPERS, isolated_cache, run_hipo

PLUGIN = '''
"""A research idea in its own package: what the recipe asks a user to write."""
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from hipo.data.segmented import SegmentedResponse, Span
from hipo.data.segmenters.base import Segmenter, require_text
from hipo.eval.benchmarks import BenchmarkSpec
from hipo.losses.modules import DPOLoss
from hipo.losses.weights import SegmentWeights


class LineSegmenter(Segmenter):
    """First line Rq, last line Ra, the lines between Mt."""

    def __init__(self, segments: Sequence[str] = ("Rq", "Mt", "Ra"), prompt_field: str = "prompt",
                 on_failure: str = "skip", fallback_segment: str | None = "Mt") -> None:
        super().__init__(segments, on_failure, fallback_segment, prompt_field)

    def response_text(self, row: Mapping[str, Any], side: str, location: Any) -> str:
        return require_text(row, side, location)

    def segment_response(self, row: Mapping[str, Any], side: str, location: Any) -> SegmentedResponse:
        text = self.response_text(row, side, location)
        first, last = text.index("\\n"), text.rindex("\\n")
        rq, mt, ra = self.segments
        return SegmentedResponse(text, (Span(rq, 0, first), Span(mt, first + 1, last), Span(ra, last + 1, len(text))))


class ScaledDPOLoss(DPOLoss):
    """DPO times a constant (a new constructor argument, checked like any other)."""

    def __init__(self, scale: float, beta: float = 0.1, segment_names: Sequence[str] = ("Rq", "Mt", "Ra")) -> None:
        super().__init__(beta=beta, segment_names=segment_names)
        self.scale = scale

    def forward(self, policy, reference, batch):
        output = super().forward(policy, reference, batch)
        output.loss = self.scale * output.loss
        return output


class HalfWholeWeights(SegmentWeights):
    """Half of the weight on the whole-response term, the other half shared by the segments."""

    def __init__(self, num_terms: int) -> None:
        super().__init__()
        self.num_terms = num_terms

    def forward(self) -> torch.Tensor:
        segments = torch.full((self.num_terms - 1,), 0.5 / (self.num_terms - 1))
        return torch.cat([segments, torch.tensor([0.5])])


def _doubling_rows(n: int, seed: int):
    return [{"id": str(k), "question": f"What is 2 times {k + seed}?", "answer": str(2 * (k + seed))} for k in range(n)]


DOUBLING = BenchmarkSpec("doubling", None, row_factory=_doubling_rows, answer_format="numeric")
'''

YAMLS = {
    "segmenter/lines.yaml": """
        _target_: recipe_plugin.LineSegmenter
        name: lines
        segments: ${segments}
        prompt_field: ${data.prompt_field}
        on_failure: skip
        fallback_segment: Mt
    """,
    "loss/scaled_dpo.yaml": """
        _target_: recipe_plugin.ScaledDPOLoss
        name: scaled_dpo
        scale: 3.0
        beta: 0.1
        segment_names: ${segments}
    """,
    "loss/weights/half_whole.yaml": """
        _target_: recipe_plugin.HalfWholeWeights
        num_terms: ${hipo.num_terms:${segments}}
    """,
    "benchmark/doubling.yaml": """
        defaults:
          - /schema/benchmark/benchmark@doubling
          - _self_
        doubling:
          name: doubling
          spec: recipe_plugin.DOUBLING
          limit: 5
    """,
}

ROW = {
    "prompt": "Double 21.",
    "chosen": "We double 21.\n21 + 21 = 42.\n42",
    "rejected": "Double it.\n21 + 21 = 41.\n41",
}


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's package on sys.path and their config folder; returns the folder holding both."""
    (tmp_path / "recipe_plugin.py").write_text(PLUGIN)
    for name, text in YAMLS.items():
        path = tmp_path / "conf" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("recipe_plugin", None)


def _compose(plugin: Path, *overrides: str):  # noqa: ANN202 - a DictConfig
    return compose_config([f"hydra.searchpath=[file://{plugin / 'conf'}]", "data=jsonl", "data.path=x", *overrides])


def test_a_new_segmenter_is_one_class_and_one_yaml(plugin: Path) -> None:
    cfg = _compose(plugin, "segmenter=lines")
    check_components(cfg)
    pairs = list(segment_rows([(RowLocation("rows.jsonl", 1), ROW)], build_segmenter(cfg.segmenter), DataStats()))
    assert [pairs[0].chosen.segment_text(s) for s in ("Rq", "Mt", "Ra")] == ["We double 21.", "21 + 21 = 42.", "42"]
    assert pairs[0].prompt == "Double 21."  # prompt_field from data=jsonl, through the interpolation


def test_a_new_loss_and_weight_scheme_are_one_class_and_one_yaml_each(plugin: Path) -> None:
    cfg = _compose(plugin, "loss=scaled_dpo")
    check_components(cfg)
    loss = instantiate_component(cfg.loss)
    generator = torch.Generator().manual_seed(0)
    policy = SegmentLogps(torch.randn(4, 4, generator=generator), torch.ones(4, 4))
    reference = SegmentLogps(torch.randn(4, 4, generator=generator), torch.ones(4, 4))
    plain = DPOLoss(beta=0.1)(policy, reference, None).loss  # type: ignore[arg-type]
    assert loss(policy, reference, None).loss.item() == pytest.approx(3.0 * plain.item())  # type: ignore[arg-type]

    weights = instantiate_component(_compose(plugin, "loss=hipo", "loss/weights=half_whole").loss).weights
    assert weights().tolist() == pytest.approx([1 / 6, 1 / 6, 1 / 6, 0.5])


def test_a_new_benchmark_is_one_spec_and_one_yaml(plugin: Path) -> None:
    cfg = _compose(plugin, "benchmark=[doubling,synthetic]")
    (doubling, synthetic) = load_benchmarks(cfg.benchmark)
    assert doubling.name == "doubling" and len(doubling.items) == 5 and doubling.answer_format == "numeric"
    assert doubling.items[0].question == "What is 2 times 0?" and doubling.items[0].gold == "0"
    assert synthetic.name == "synthetic"


def test_mistakes_in_the_users_yaml_are_named_by_key(plugin: Path) -> None:
    with pytest.raises(ConfigError, match=r"^loss\.scale='big': expected float \(parameter of recipe_plugin"):
        check_components(_compose(plugin, "loss=scaled_dpo", "loss.scale=big"))
    (plugin / "conf" / "benchmark" / "doubling.yaml").write_text(
        "doubling:\n  name: doubling\n  spec: recipe_plugin.HalfWholeWeights\n"
    )
    with pytest.raises(ConfigError, match=r"benchmark\.doubling\.spec=recipe_plugin\.HalfWholeWeights: expected a"):
        load_benchmarks(_compose(plugin, "benchmark=[doubling]").benchmark)


@pytest.mark.slow  # two `hipo segment` processes
def test_the_recipe_through_the_command_line(plugin: Path, tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps(ROW) + "\n")
    cache = isolated_cache(tmp_path)
    env = {"PYTHONPATH": f"{plugin}:{HELPERS}"}
    common = [f"hydra.searchpath=[file://{plugin / 'conf'}]", "segmenter=lines", "data=jsonl", f"data.path={rows}"]
    args = ["segment", *common, "model=tiny", "num_examples=1", f"hydra.run.dir={tmp_path / 'out'}"]
    done = run_hipo(args, cwd=tmp_path, cache=cache, env=env)
    assert done.returncode == 0, done.stderr
    assert "21 + 21 = 42." in done.stdout and "shown: 1" in done.stdout
    typo = run_hipo([*args, "+segmenter.fallback_segmnt=Mt"], cwd=tmp_path, cache=cache, env=env)
    assert typo.returncode == 2
    assert (
        typo.stderr.strip()
        .splitlines()[-1]
        .startswith("error: segmenter.fallback_segmnt: not a parameter of recipe_plugin.LineSegmenter")
    )
