"""`loss=sft` as a loss like any other (tiny model): no reference, held-out NLL, packing, completion rows, exact resume
after a crash, and preference training continued from its adapter (with its own or another reference adapter)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig
from safetensors.torch import load_file

from hipo.app import builders
from hipo.app import train as train_app
from hipo.data.row_errors import DataError
from hipo.losses.modules import SFTLoss
from hipo.models.logprobs import sequence_segment_logps

pytestmark = pytest.mark.slow  # tiny-model `hipo train` runs into a fresh MLflow store

SFT = ["method=sft", "data.source.format=tags", "data.val_source.format=tags", "segmenter=tags", "optim.lr=1e-2"]


def _run(cfg: DictConfig):
    client = MlflowClient(cfg.logger.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name(cfg.logger.experiment_name).experiment_id])
    return run


def test_sft_trains_without_any_reference_and_lowers_the_held_out_nll(
    tiny_cfg: Callable[..., DictConfig], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_reference(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("SFT must not build a reference (a full frozen copy without LoRA)")

    monkeypatch.setattr(builders, "build_reference", no_reference)
    cfg = tiny_cfg(*SFT, "trainer.max_steps=4", "reference_cache=true")
    result = train_app.train(cfg)
    run = _run(cfg)
    assert run.info.status == "FINISHED" and run.data.tags["hipo.loss"] == "sft"
    metrics = run.data.metrics
    assert metrics["val_after/nll/whole"] < metrics["val_before/nll/whole"]
    assert {"train/nll", "train/nll/Rq", "train/nll/Mt", "train/nll/Ra"} <= set(metrics)
    assert not any(key.startswith(("val_after/rewards", "train/rewards")) for key in metrics)
    assert not (Path(result["output_dir"]) / "held_out").exists()  # no pairs, no margins
    assert "| term | NLL before | NLL after | tokens |" in capsys.readouterr().out


def test_packed_and_padded_sft_batches_give_the_same_loss(tiny_cfg: Callable[..., DictConfig]) -> None:
    losses = []
    for packed in ("false", "true"):
        cfg = tiny_cfg(*SFT, f"data.packed={packed}", "data.pack_length=256", "data.length_grouped=false")
        bundle = builders.build_policy(cfg.model, with_reference=False)
        datamodule = builders.build_datamodule(cfg, bundle.tokenizer, paired=False, responses_only=True)
        datamodule.setup("fit")
        batch = next(iter(datamodule.train_dataloader()))
        assert batch.packed == (packed == "true") and batch.num_sequences == cfg.data.batch_size
        with torch.no_grad():
            losses.append(SFTLoss()(sequence_segment_logps(bundle.policy, batch), None, batch).loss.item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_sft_reads_prompt_completion_rows(tiny_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    rows = [
        {
            "prompt": f"What is {i} + 1?",
            "completion": f"<Rq>Find {i} + 1.</Rq>\n<Mt>{i} + 1 = {i + 1}.</Mt>\n<Ra>{i + 1}</Ra>",
        }
        for i in range(12)
    ]
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    cfg = tiny_cfg("method=sft", "data=jsonl", f"data.path={data}", "segmenter=tags", "data.val_fraction=0.25")
    train_app.train(cfg)
    assert _run(cfg).data.metrics["data/train_pairs"] + _run(cfg).data.metrics["data/val_pairs"] == 12
    data.write_text(json.dumps({"prompt": "1 + 1?", "answer": "2"}) + "\n")
    with pytest.raises(DataError, match="field 'chosen': missing field"):
        train_app.train(
            tiny_cfg(
                "method=sft", "data=jsonl", f"data.path={data}", "segmenter=tags", f"output_dir={tmp_path / 'bad'}"
            )
        )


def test_a_crashed_sft_run_resumes_where_an_uninterrupted_one_ends(
    tiny_cfg: Callable[..., DictConfig], crash_at_step: Callable[[int | None], None], tmp_path: Path
) -> None:
    common = [*SFT, "model.lora.enabled=true", "model.lora.r=4", "model.lora.dropout=0.1", "trainer.max_steps=4"]
    common.append("trainer.checkpoint_every_n_steps=2")
    reference = train_app.train(tiny_cfg(*common, f"output_dir={tmp_path / 'straight'}", "logger.experiment_name=a"))
    crash_at_step(3)
    crashed = [*common, f"output_dir={tmp_path / 'crashed'}", "logger.experiment_name=b"]
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_app.train(tiny_cfg(*crashed))
    crash_at_step(None)
    resumed = train_app.train(tiny_cfg(*crashed, "resume=auto"))
    want = load_file(Path(reference["output_dir"]) / "final" / "adapter_model.safetensors")
    got = load_file(Path(resumed["output_dir"]) / "final" / "adapter_model.safetensors")
    assert want.keys() == got.keys() and all(torch.equal(got[k], v) for k, v in want.items())


def test_preference_training_continues_from_the_sft_adapter_with_its_reference(
    tiny_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    lora = ["model.lora.enabled=true", "model.lora.r=4"]
    sft = train_app.train(tiny_cfg(*SFT, *lora, f"output_dir={tmp_path / 'sft'}", "logger.experiment_name=sft"))
    other = train_app.train(
        tiny_cfg(*SFT, *lora, "seed=9", "optim.lr=5e-2", f"output_dir={tmp_path / 'o'}", "logger.experiment_name=o")
    )
    adapter, other_adapter = Path(sft["output_dir"]) / "final", Path(other["output_dir"]) / "final"
    same = train_app.train(
        tiny_cfg(
            "method=dpo", f"model.adapter_path={adapter}", f"output_dir={tmp_path / 'dpo'}", "logger.experiment_name=c"
        )
    )
    assert same["val_before"]["rewards/margin/whole"] == 0.0  # the policy starts as its reference, the SFT adapter
    assert same["val_before"]["rewards/accuracy/whole"] == 0.5
    against_other = train_app.train(
        tiny_cfg(
            "method=dpo",
            f"model.adapter_path={adapter}",
            f"model.reference_adapter_path={other_adapter}",
            f"output_dir={tmp_path / 'dpo2'}",
            "logger.experiment_name=d",
        )
    )
    assert against_other["val_before"]["rewards/margin/whole"] != 0.0  # measured against another adapter
