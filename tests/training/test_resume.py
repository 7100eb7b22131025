"""Exact, honest resume: `kill -9`, SIGTERM, SIGUSR1 and a crash while saving, then `resume=auto`.

Every interrupted chain must end bit for bit where an uninterrupted run of the same seed ends: LoRA weights (with
dropout, so RNG states matter), learned segment weights, optimizer and scheduler state; and it continues ONE MLflow
run whose metric history has every step exactly once. Faults are injected by tests/helpers/sitecustomize.py in the
real `hipo train` process.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers.cli_runs import TINY_TRAIN, final_weights, history, isolated_cache, run_hipo, runs_of

pytestmark = pytest.mark.slow

RUN = [
    *TINY_TRAIN,
    "model.lora.enabled=true",
    "model.lora.r=4",
    "model.lora.dropout=0.1",  # draws from the RNG at every step
    "loss/weights=learned",
    "optim.weights_lr=0.05",
    # BCO's running reward mean is state outside the weights and the optimizer: a resume must continue it
    "loss.variant=[sigmoid,bco_pair]",
    "loss.variant_weights=[0.7,0.3]",
    "trainer.max_steps=8",
    "trainer.checkpoint_every_n_steps=2",
    "data.batch_size=4",  # 24 training pairs: 6 steps per epoch, so the runs cross an epoch boundary
    "seed=5",
]


def _train(tmp_path: Path, cache: Path, uri: str, out: str, *extra: str, env: dict[str, str] | None = None):
    args = [
        "train",
        *RUN,
        f"logger.tracking_uri={uri}",
        f"logger.experiment_name={out}",
        f"output_dir={tmp_path / out}",
    ]
    return run_hipo([*args, *extra], tmp_path, cache, env=env)


def _signal_at(step: int, name: str) -> dict[str, str]:
    return {"HIPO_TEST_SIGNAL_AT_STEP": str(step), "HIPO_TEST_SIGNAL": name}


def _checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def _assert_same_state(resumed_dir: Path, reference_dir: Path) -> None:
    """Same final adapter, learned weights, optimizer, scheduler, RNG states and position as the reference run."""
    for name, value in final_weights(reference_dir).items():
        assert torch.equal(final_weights(resumed_dir)[name], value), name
    assert (resumed_dir / "final" / "hipo.json").read_text() == (reference_dir / "final" / "hipo.json").read_text()
    got, want = (
        _checkpoint(resumed_dir / "checkpoints" / "last.ckpt"),
        _checkpoint(reference_dir / "checkpoints" / "last.ckpt"),
    )
    assert got["global_step"] == want["global_step"] == 8
    assert got["state_dict"].keys() == want["state_dict"].keys()
    assert any("loss_fn.weights" in k for k in want["state_dict"])  # learned segment weights are in it
    # BCO's running mean, per term (Rq, Mt, Ra, whole): 8 steps of 4 pairs, both rewards of each
    assert want["state_dict"]["loss_fn.bco_reward_count"].tolist() == [64.0] * 4
    for key, value in want["state_dict"].items():
        assert torch.equal(got["state_dict"][key], value), key
    for got_opt, want_opt in zip(got["optimizer_states"], want["optimizer_states"], strict=True):
        for param, state in want_opt["state"].items():
            for name, value in state.items():
                assert torch.equal(torch.as_tensor(got_opt["state"][param][name]), torch.as_tensor(value)), name
    assert got["lr_schedulers"] == want["lr_schedulers"]
    (got_resume,) = [v for k, v in got["callbacks"].items() if k.startswith("ExactResume")]
    (want_resume,) = [v for k, v in want["callbacks"].items() if k.startswith("ExactResume")]
    assert got_resume["position"] == want_resume["position"]
    assert torch.equal(got_resume["rng"][0]["torch"], want_resume["rng"][0]["torch"])


def _one_run_with_every_step_once(uri: str, experiment: str, status: str = "FINISHED"):
    (run,) = runs_of(uri, experiment)
    assert run.info.status == status
    steps = [s for s, _ in history(uri, run.info.run_id, "train/loss")]
    assert steps == list(range(8)), steps  # no gap, no duplicate
    return run


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: the same run, never interrupted."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("uninterrupted")
    cache = isolated_cache(root)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()
    done = _train(root, cache, uri, "ref")
    assert done.returncode == 0, done.stderr[-4000:]
    return root / "ref"


def test_kill_sigterm_usr1_and_a_crash_while_saving_all_resume_exactly(
    tmp_path: Path, mlflow_uri: str, isolated_data_cache: Path, uninterrupted: Path
) -> None:
    """One job interrupted four ways in a row (8 steps, a checkpoint every 2, an epoch every 6)."""
    cache, out = isolated_data_cache, "chain"
    checkpoints = tmp_path / out / "checkpoints"
    killed = _train(tmp_path, cache, mlflow_uri, out, env=_signal_at(1, "KILL"))  # kill -9 before any checkpoint
    assert killed.returncode == -9 and not checkpoints.exists()
    (run,) = runs_of(mlflow_uri, out)
    assert run.info.status == "RUNNING"  # nobody could mark it: the resumed job continues it

    terminated = _train(tmp_path, cache, mlflow_uri, out, "resume=auto", env=_signal_at(3, "TERM"))
    assert terminated.returncode == 128 + 15, terminated.stderr[-4000:]
    assert "no checkpoint under" in terminated.stdout + terminated.stderr  # started over, said so
    assert "stopped by SIGTERM" in terminated.stderr and "Traceback" not in terminated.stderr
    assert runs_of(mlflow_uri, out)[0].info.status == "KILLED"
    assert _checkpoint(checkpoints / "last.ckpt")["global_step"] == 4  # the step it was in ended, then it saved

    preempted = _train(tmp_path, cache, mlflow_uri, out, "resume=auto", env=_signal_at(5, "USR1"))
    assert preempted.returncode == 128 + 10, preempted.stderr[-4000:]
    assert runs_of(mlflow_uri, out)[0].info.status == "KILLED"
    assert _checkpoint(checkpoints / "last.ckpt")["global_step"] == 6  # the last step of the first epoch

    crashed = _train(tmp_path, cache, mlflow_uri, out, "resume=auto", env={"HIPO_TEST_KILL_WHILE_SAVING_STEP": "8"})
    assert crashed.returncode == -9
    assert _checkpoint(checkpoints / "last.ckpt")["global_step"] == 6  # the half-written save never replaced it

    finished = _train(tmp_path, cache, mlflow_uri, out, "resume=auto")
    assert finished.returncode == 0, finished.stderr[-4000:]
    final_run = _one_run_with_every_step_once(mlflow_uri, out)
    assert final_run.info.run_id == run.info.run_id and final_run.data.tags["hipo.resumes"] == "4"
    assert final_run.data.metrics["val_before/rewards/accuracy/whole"] == 0.5  # measured by the second job only
    _assert_same_state(tmp_path / out, uninterrupted)
    assert not list(checkpoints.glob(".*.tmp"))  # the interrupted save's temporary file was cleaned up
