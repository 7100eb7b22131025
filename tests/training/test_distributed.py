"""Several processes from the `hipo` command: DDP over 2 CPU processes (gloo) trains like one process with 2x batch.

Each test starts real `hipo train` processes (rank 0 starts the second rank itself), so they are marked slow.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from hipo.models.tiny import build_tiny_model
from tests.helpers.cli_runs import TINY_TRAIN, final_weights, history, run_hipo, runs_of

pytestmark = pytest.mark.slow

DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true"]
STEPS = ["trainer.max_steps=4", "trainer.checkpoint_every_n_steps=2"]


def test_ddp_over_two_processes_equals_one_process_with_twice_the_batch(
    tmp_path: Path, mlflow_uri: str, isolated_data_cache: Path
) -> None:
    # AOT sorts the pairs of the whole batch, BCO shifts by the mean reward of every pair seen: both batch-wide, so
    # under DDP they gather / all-reduce across the ranks, and the combination trains as one process would
    variants = ["loss.variant=[sigmoid,aot,bco_pair]", "loss.variant_weights=[0.5,0.3,0.2]"]
    common = [*TINY_TRAIN, *STEPS, *variants, f"logger.tracking_uri={mlflow_uri}", "seed=3"]
    ddp = run_hipo(
        [
            "train",
            "-m",  # a sweep job (of one) runs DDP too
            *common,
            *DDP,
            "data.batch_size=2",
            "logger.experiment_name=ddp",
            f"hydra.sweep.dir={tmp_path / 'ddp'}",
        ],
        tmp_path,
        isolated_data_cache,
    )
    assert ddp.returncode == 0, ddp.stderr[-4000:]
    single = run_hipo(
        ["train", *common, "data.batch_size=4", "logger.experiment_name=single", f"output_dir={tmp_path / 'single'}"],
        tmp_path,
        isolated_data_cache,
    )
    assert single.returncode == 0, single.stderr[-4000:]

    # exactly one MLflow run for the DDP job (rank 1 logs nothing), besides the sweep's parent
    runs = runs_of(mlflow_uri, "ddp")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(runs) == 2 and len(children) == 1 and children[0].info.status == "FINISHED"
    ddp_run = children[0]
    (single_run,) = runs_of(mlflow_uri, "single")
    ddp_loss = history(mlflow_uri, ddp_run.info.run_id, "train/loss")
    single_loss = history(mlflow_uri, single_run.info.run_id, "train/loss")
    assert [s for s, _ in ddp_loss] == [s for s, _ in single_loss] == [0, 1, 2, 3]  # each step logged once
    # rank 0 logs its own shard's loss; the weights are what must agree
    ddp_dir = tmp_path / "ddp" / "0"
    assert (ddp_dir / "checkpoints" / "last.ckpt").is_file() and (ddp_dir / "final" / "hipo.json").is_file()

    ddp_weights, single_weights = final_weights(ddp_dir), final_weights(tmp_path / "single")
    assert ddp_weights.keys() == single_weights.keys()
    ddp_state, single_state = (
        torch.load(d / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
        for d in (ddp_dir, tmp_path / "single")
    )
    assert single_state["loss_fn.bco_reward_count"].tolist() == [32.0] * 4  # 4 steps x 4 pairs x 2 rewards, per term
    assert torch.equal(ddp_state["loss_fn.bco_reward_count"], single_state["loss_fn.bco_reward_count"])
    # the sums of rewards are all-reduced (one process alone would hold about half); the rewards themselves move
    # with the weights' float rounding (seen: relative 4e-5)
    ddp_sum, single_sum = ddp_state["loss_fn.bco_reward_sum"], single_state["loss_fn.bco_reward_sum"]
    torch.testing.assert_close(ddp_sum, single_sum, atol=0, rtol=1e-3)
    initial = build_tiny_model().state_dict()
    assert sum(not torch.equal(v, initial[k]) for k, v in single_weights.items()) > len(single_weights) // 2
    # Adam moves every weight by about lr (1e-3) a step, whatever the gradient's size: a different batch would
    # differ by ~1e-3. Summing gradients over 2 ranks instead of 1 batch only changes float rounding (seen: <= 5e-6).
    for name, value in single_weights.items():
        torch.testing.assert_close(ddp_weights[name], value, atol=2e-5, rtol=0, msg=name)
    # held-out metrics: each rank scored half of the pairs, the exact sums were all-reduced
    # (before training: the same weights, only summation order differs; after: weights within the rounding above,
    # which moves a margin of ~6e-5 by up to ~2e-6 (seen on an AVX-512 host); the pair counts check the sharding)
    for term in ("Rq", "Mt", "Ra", "whole"):
        for when, tolerance in (("val_before", {"abs": 1e-6}), ("val_after", {"rel": 2e-3, "abs": 5e-6})):
            key = f"{when}/rewards/margin/{term}"
            assert ddp_run.data.metrics[key] == pytest.approx(single_run.data.metrics[key], **tolerance), key
            pairs = f"{when}/pairs/{term}"
            assert ddp_run.data.metrics[pairs] == single_run.data.metrics[pairs] == 8.0
            nll, tokens = f"{when}/nll/{term}", f"{when}/tokens/{term}"  # the chosen responses' NLL, all-reduced too
            assert ddp_run.data.metrics[nll] == pytest.approx(single_run.data.metrics[nll], **tolerance), nll
            assert ddp_run.data.metrics[tokens] == single_run.data.metrics[tokens] > 0
    assert MlflowClient(mlflow_uri).get_run(ddp_run.info.run_id).data.tags["hipo.method"] == "hipo"


def test_sft_over_two_processes_equals_one_process_with_twice_the_batch(
    tmp_path: Path, mlflow_uri: str, isolated_data_cache: Path
) -> None:
    """SFT's single-response batches shard and all-reduce like pairs: the same weights and held-out NLL."""
    sft = ["method=sft", "data.source.format=tags", "data.val_source.format=tags", "segmenter=tags"]
    common = [*TINY_TRAIN, *sft, "trainer.max_steps=2", "trainer.checkpoint_every_n_steps=0", "seed=3"]
    common.append(f"logger.tracking_uri={mlflow_uri}")
    ddp = run_hipo(
        ["train", *common, *DDP, "data.batch_size=2", "logger.experiment_name=ddp", f"output_dir={tmp_path / 'ddp'}"],
        tmp_path,
        isolated_data_cache,
    )
    assert ddp.returncode == 0, ddp.stderr[-4000:]
    single = run_hipo(
        ["train", *common, "data.batch_size=4", "logger.experiment_name=one", f"output_dir={tmp_path / 'one'}"],
        tmp_path,
        isolated_data_cache,
    )
    assert single.returncode == 0, single.stderr[-4000:]
    ddp_weights, single_weights = final_weights(tmp_path / "ddp"), final_weights(tmp_path / "one")
    for name, value in single_weights.items():
        torch.testing.assert_close(ddp_weights[name], value, atol=2e-5, rtol=0, msg=name)
    (ddp_run,), (single_run,) = runs_of(mlflow_uri, "ddp"), runs_of(mlflow_uri, "one")
    for key in ("val_before/nll/whole", "val_after/nll/Mt", "val_after/tokens/whole"):
        assert ddp_run.data.metrics[key] == pytest.approx(single_run.data.metrics[key], rel=1e-4), key


def test_a_signal_to_one_rank_stops_both_at_the_same_step_with_one_checkpoint(
    tmp_path: Path, mlflow_uri: str, isolated_data_cache: Path
) -> None:
    """SIGTERM reaches rank 1 only (a node's scheduler, or `kill` of a worker): the ranks agree at the step end."""
    done = run_hipo(
        [
            "train",
            *TINY_TRAIN,
            *DDP,
            "trainer.max_steps=6",
            "trainer.checkpoint_every_n_steps=0",
            f"logger.tracking_uri={mlflow_uri}",
            f"output_dir={tmp_path / 'run'}",
        ],
        tmp_path,
        isolated_data_cache,
        env={"HIPO_TEST_SIGNAL_AT_STEP": "2", "HIPO_TEST_SIGNAL": "TERM", "HIPO_TEST_SIGNAL_RANK": "1"},
    )
    assert done.returncode == 128 + 15, done.stderr[-4000:]
    (run,) = runs_of(mlflow_uri, "hipo")
    assert run.info.status == "KILLED"
    assert [s for s, _ in history(mlflow_uri, run.info.run_id, "train/loss")] == [0, 1, 2]
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == 3 and len(checkpoint["callbacks"]) > 0
    (resume_state,) = [v for k, v in checkpoint["callbacks"].items() if k.startswith("ExactResume")]
    assert len(resume_state["rng"]) == 2  # both ranks' RNG states, gathered into the one checkpoint


def test_a_worker_that_dies_fails_the_job_and_its_run(
    tmp_path: Path, mlflow_uri: str, isolated_data_cache: Path
) -> None:
    done = run_hipo(
        ["train", *TINY_TRAIN, *DDP, "trainer.max_steps=6", f"logger.tracking_uri={mlflow_uri}"],
        tmp_path,
        isolated_data_cache,
        env={"HIPO_TEST_SIGNAL_AT_STEP": "2", "HIPO_TEST_SIGNAL": "KILL", "HIPO_TEST_SIGNAL_RANK": "1"},
        timeout=300,
    )
    assert done.returncode == 1
    (run,) = runs_of(mlflow_uri, "hipo")
    assert run.info.status == "FAILED" and "worker rank 1" in run.data.tags["hipo.error"]
