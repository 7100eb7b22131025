"""`hipo iterate`: two rounds of pairs -> training on the tiny planted model, stopped mid-training and resumed at the
round it stopped in; and the commands each round runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from hipo.app import iterate_command
from hipo.app.iterate_command import check_iterate, pairs_argv, round_paths, train_argv
from hipo.config.compose import compose_config
from hipo.errors import ConfigError
from tests.helpers.cli_runs import isolated_cache, run_hipo, runs_of
from tests.helpers.planted_model import planted_model


def _problems(tmp_path: Path) -> tuple[Path, Path]:
    """Eight planted problems (gold 1 or 2) and a held-out gsm8k root that shares none of them."""
    rows = [
        {"id": f"p{i}", "question": f"Planted problem {i}: find x.", "answer": f"#### {1 + i % 2}"} for i in range(8)
    ]
    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(json.dumps(row) + "\n" for row in rows))
    root = tmp_path / "benchmarks"
    (root / "gsm8k").mkdir(parents=True)
    (root / "gsm8k" / "test.jsonl").write_text(json.dumps({"question": "Held out: find y.", "answer": "#### 3"}) + "\n")
    return problems, root


@pytest.mark.slow  # five `hipo` processes
def test_two_rounds_on_the_tiny_model_each_sampling_from_the_last_policy(tmp_path: Path) -> None:
    model = planted_model(tmp_path / "planted")
    problems, root = _problems(tmp_path)
    uri, out = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "iterate"
    pairs = ["problems=jsonl", f"problems.path={problems}", f"evaluate.benchmark_root={root}", "num_samples=4"]
    pairs += ["chunk_size=4", "evaluate.generation.max_new_tokens=8", "evaluate.generation.progress=false"]
    pairs += ["segmenter.on_failure=single_segment"]
    args = [
        "iterate",
        "experiment=iterate_smoke",
        f"model.name_or_path={model}",
        "iterate.pairs=[" + ",".join(json.dumps(p) for p in pairs) + "]",
        f"output_dir={out}",
        f"logger.tracking_uri={uri}",
        f"logger.artifact_location={tmp_path / 'mlruns'}",
    ]
    done = run_hipo(args, cwd=tmp_path, cache=isolated_cache(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    runs = runs_of(uri, "iterate_smoke")
    (parent,) = [r for r in runs if r.data.tags.get("hipo.kind") == "iterate"]
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert set(children) == {"round0-pairs", "round0-train", "round1-pairs", "round1-train"}
    assert all(r.info.status == "FINISHED" for r in [parent, *children.values()])
    round0_final = str(round_paths(out, 0)[1] / "final")
    assert children["round0-pairs"].data.params["checkpoint"] == "None"  # round 0 samples the base model
    assert children["round1-pairs"].data.params["checkpoint"] == round0_final  # round 1 samples policy 1
    assert children["round1-train"].data.params["model.adapter_path"] == round0_final  # and trains from it
    assert children["round1-train"].data.params["data.path"] == str(round_paths(out, 1)[0])
    assert (round_paths(out, 1)[1] / "final" / "adapter_config.json").is_file()
    for index in (0, 1):
        metrics = MlflowClient(uri).get_run(children[f"round{index}-pairs"].info.run_id).data.metrics
        assert metrics["pairs/pairs_written"] == len(round_paths(out, index)[0].read_text().splitlines()) > 0


def test_a_rerun_continues_at_the_step_it_stopped_in(tmp_path: Path, mlflow_uri: str, monkeypatch) -> None:
    """Steps replaced by stand-ins that write their outputs: the first invocation stops in round 1's training, the
    second runs that step only, in the same iterate run."""
    ran: list[str] = []
    stop_at: list[str | None] = ["round 1 train"]

    def step(command: str, name: str, argv: list[str]) -> float:
        ran.append(name)
        if name == stop_at[0]:
            raise SystemExit(143)
        target = next(Path(a.split("=", 1)[1]) for a in argv if a.startswith(("out=", "output_dir=")))
        if name.endswith("pairs"):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("{}\n")
        else:
            (target / "final").mkdir(parents=True)
            (target / "final" / "hipo.json").write_text("{}")
        return 0.0

    monkeypatch.setattr(iterate_command, "run_step", step)
    monkeypatch.setattr(iterate_command, "_task_overrides", lambda: [])
    cfg = _cfg(tmp_path, f"logger.tracking_uri={mlflow_uri}")
    with pytest.raises(SystemExit):
        iterate_command.iterate_command(cfg)
    assert ran == ["round 0 pairs", "round 0 train", "round 1 pairs", "round 1 train"]
    ran.clear()
    stop_at[0] = None
    result = iterate_command.iterate_command(cfg)
    assert ran == ["round 1 train"]
    (run,) = runs_of(mlflow_uri, "iterate_smoke")
    assert run.info.run_id == result["run_id"] and run.info.status == "FINISHED"
    assert run.data.tags["hipo.resumes"] == "1"


def _cfg(tmp_path: Path, *overrides: str):
    return compose_config(["experiment=iterate_smoke", f"output_dir={tmp_path / 'it'}", *overrides])


def test_each_round_samples_from_its_policy_and_trains_from_its_adapter(tmp_path: Path) -> None:
    start = tmp_path / "sft" / "final"
    start.mkdir(parents=True)
    (start / "adapter_config.json").write_text("{}")
    cfg = _cfg(tmp_path, f"iterate.start={start}", "iterate.reference=start", "seed=3")
    assert check_iterate(cfg) == start
    policy1 = tmp_path / "it" / "round0" / "train" / "final"
    first = pairs_argv(cfg, 0, start, tmp_path / "p0.jsonl", "parent")
    later = pairs_argv(cfg, 1, policy1, tmp_path / "p1.jsonl", "parent")
    assert f"checkpoint={start}" in first and "seed=3" in first and "logger.parent_run_id=parent" in first
    assert f"checkpoint={policy1}" in later and "seed=4" in later  # a new draw every round
    train0 = train_argv(cfg, 0, start, start, tmp_path / "p0.jsonl", "parent")
    train1 = train_argv(cfg, 1, policy1, start, tmp_path / "p1.jsonl", "parent")
    assert f"model.adapter_path={start}" in train0 and not any("reference_adapter_path" in a for a in train0)
    assert f"model.adapter_path={policy1}" in train1 and f"model.reference_adapter_path={start}" in train1
    assert "resume=auto" in train1 and f"data.path={tmp_path / 'p1.jsonl'}" in train1
    base = _cfg(tmp_path)  # no start: round 0 samples from the base model and trains a fresh adapter
    assert "model.lora.enabled=false" in pairs_argv(base, 0, None, tmp_path / "p.jsonl", "x")
    assert not any(a.startswith("model.adapter_path") for a in train_argv(base, 0, None, None, tmp_path / "p", "x"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["iterate.rounds=0"], "iterate.rounds"),
        (["iterate.reference=sft"], "iterate.reference"),
        (["iterate.reference=start"], "needs iterate.start"),
        (["iterate.start=/no/such/folder"], "adapter_config.json"),
    ],
)
def test_bad_iterate_settings_are_refused_naming_the_key(tmp_path: Path, overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_iterate(_cfg(tmp_path, *overrides))
