"""Parts of the commands that need no model, store or composition: the held-out summary table, where `hipo report`
writes, the rows `hipo segment` reads, what `hipo eval checkpoint=` resolves to, and the Lightning strategy.
(The commands end to end: tests/app, tests/eval/test_eval_command.py, tests/training, tests/report.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from hipo.app.eval_model import resolve_eval_target
from hipo.app.lightning_trainer import strategy_name
from hipo.app.report_command import report_dir
from hipo.app.segment import _skips, first_pairs
from hipo.app.summary import format_held_out_table
from hipo.data.data_stats import DataStats
from hipo.data.segmenters.fields import FieldsSegmenter
from hipo.data.sources.synthetic import SyntheticSource


def test_held_out_table_rows_before_and_after() -> None:
    before = {"rewards/accuracy/Mt": 0.5, "rewards/margin/Mt": 0.0}
    after = {"rewards/accuracy/Mt": 0.75, "rewards/margin/Mt": 0.125, "pairs/Mt": 8}
    after |= {"rewards/accuracy/whole": 1.0, "rewards/margin/whole": 0.5, "pairs/whole": 8}
    lines = format_held_out_table(before, after, ["Rq", "Mt", "whole"]).splitlines()
    assert lines[0].startswith("| term | accuracy before") and len(lines) == 4  # Rq was never scored: no row
    assert lines[2] == "| Mt | 0.500 | 0.750 | +0.0000 | +0.1250 | 8 |"
    assert lines[3].startswith("| whole | nan | 1.000 | +nan | +0.5000 | 8")


def _report_cfg(**values: object):
    keys = ("out_dir", "experiment_config", "sweep_id", "parent_run_id", "mlflow_experiment")
    return OmegaConf.create({key: values.get(key) for key in keys})


def test_report_folder_follows_the_selector() -> None:
    assert report_dir(_report_cfg(out_dir="/r", sweep_id="s")) == Path("/r")
    assert report_dir(_report_cfg(experiment_config="study_cpu")) == Path("experiments/study_cpu/report")
    assert report_dir(_report_cfg(parent_run_id="p1")) == Path("reports/p1")
    assert report_dir(_report_cfg(mlflow_experiment="hipo")) == Path("reports/hipo")
    with pytest.raises(ValueError, match="mlflow_experiment="):
        report_dir(_report_cfg())


class CountingFields(FieldsSegmenter):
    def __init__(self) -> None:
        super().__init__()
        self.prepared: list[int] = []

    def prepare(self, rows):  # noqa: ANN001, ANN201
        self.prepared.append(len(rows))
        return super().prepare(rows)


def test_segment_reads_only_the_rows_it_shows_and_prepares_them_at_once() -> None:
    segmenter, stats = CountingFields(), DataStats()
    pairs = first_pairs(SyntheticSource(num_pairs=50, seed=0).rows(), segmenter, stats, 3)
    assert len(pairs) == 3 and stats.as_dict()["rows_read"] == 3 and segmenter.prepared == [3]
    assert first_pairs(iter([]), segmenter, DataStats(), 3) == []
    assert _skips({"rows_read": 3, "pairs_kept": 3, "malformed": 0}) == "no rows skipped or fallen back"
    assert _skips({"rows_read": 5, "pairs_kept": 3, "malformed": 2, "fallback": 1}) == "malformed: 2, fallback: 1"


def _eval_cfg(checkpoint: object = None):
    model = {"name_or_path": "base/model", "adapter_path": None, "lora": {"enabled": True}}
    return OmegaConf.create({"model": model, "checkpoint": checkpoint})


def test_eval_checkpoint_resolves_to_base_adapter_model_or_lightning_file(tmp_path: Path) -> None:
    base = resolve_eval_target(_eval_cfg())
    assert (base.model_cfg.name_or_path, base.lightning_checkpoint, base.description) == (
        "base/model",
        None,
        "base/model",
    )

    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"not read")
    lightning = resolve_eval_target(_eval_cfg(str(ckpt)))
    assert lightning.lightning_checkpoint == ckpt and lightning.model_cfg.lora.enabled  # built as in training

    adapter = tmp_path / "final"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "hipo.json").write_text(json.dumps({"base_model": "tiny"}))
    target = resolve_eval_target(_eval_cfg(str(adapter)))
    assert (target.model_cfg.name_or_path, target.model_cfg.adapter_path) == ("tiny", str(adapter))
    assert not target.model_cfg.lora.enabled and target.lightning_checkpoint is None

    full = tmp_path / "full"
    full.mkdir()
    (full / "config.json").write_text("{}")
    target = resolve_eval_target(_eval_cfg(str(full)))
    assert (target.model_cfg.name_or_path, target.model_cfg.adapter_path, target.description) == (
        str(full),
        None,
        str(full),
    )

    with pytest.raises(FileNotFoundError, match="no such file"):
        resolve_eval_target(_eval_cfg(str(tmp_path / "missing")))
    with pytest.raises(FileNotFoundError, match="neither adapter_config.json nor config.json"):
        resolve_eval_target(_eval_cfg(str(tmp_path)))


def test_auto_strategy_is_ddp_with_several_devices() -> None:
    trainer = OmegaConf.create({"strategy": "auto", "num_nodes": 1})
    assert strategy_name(trainer, devices_per_node=1) == "auto"
    assert strategy_name(trainer, devices_per_node=2) == "ddp"
    assert strategy_name(OmegaConf.create({"strategy": "auto", "num_nodes": 2}), devices_per_node=1) == "ddp"
    assert strategy_name(OmegaConf.create({"strategy": "fsdp", "num_nodes": 1}), devices_per_node=4) == "fsdp"
