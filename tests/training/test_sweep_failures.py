"""Sweeps that tell the truth, and single runs that fail in one line: the real `hipo` command in a subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers.cli_runs import TINY, TINY_TRAIN, run_hipo, runs_of, write_pairs

pytestmark = pytest.mark.slow  # the real `hipo` command in subprocesses (seconds of start-up each)


def test_a_sweep_with_a_bad_data_file_records_the_failure_goes_on_and_exits_nonzero(
    tmp_path: Path, mlflow_uri: str, isolated_data_cache: Path
) -> None:
    good = write_pairs(tmp_path / "good.jsonl", 24)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good.read_text().splitlines()[0] + "\n" + '{"prompt": "2+2?", "chosen": \n')
    sweep = run_hipo(
        [
            "train",
            "-m",
            *TINY,
            "trainer.max_steps=2",
            "data=jsonl",
            "segmenter=tags",
            f"data.path={bad},{good}",  # the failing job first: the sweep must go on to the next
            "logger.experiment_name=sweep-fail",
            f"logger.tracking_uri={mlflow_uri}",
            f"hydra.sweep.dir={tmp_path / 'multirun'}",
        ],
        tmp_path,
        isolated_data_cache,
    )
    assert sweep.returncode == 1, sweep.stderr[-3000:]
    assert "sweep incomplete: 1 of 2 jobs failed" in sweep.stderr
    assert f"failed: data.path={bad}: DataError: {bad}:2: malformed JSON" in sweep.stderr

    runs = runs_of(mlflow_uri, "sweep-fail")
    (parent,) = [r for r in runs if r.data.tags.get("hipo.role") == "sweep"]
    children = {Path(r.data.params["data.path"]).name: r for r in runs if r.data.tags.get("mlflow.parentRunId")}
    assert parent.info.status == "FAILED" and parent.data.tags["hipo.sweep_failed_jobs"] == "1"
    failed, finished = children.get("bad.jsonl"), children["good.jsonl"]
    assert failed is not None, "the job that failed in its setup has a run too"
    assert failed.info.status == "FAILED" and finished.info.status == "FINISHED"
    assert failed.data.tags["hipo.error"].startswith(f"DataError: {bad}:2: malformed JSON")
    client = MlflowClient(mlflow_uri)
    assert (
        "malformed JSON" in Path(client.download_artifacts(failed.info.run_id, "error.txt", str(tmp_path))).read_text()
    )

    report = run_hipo(
        ["report", "mlflow_experiment=sweep-fail", f"logger.tracking_uri={mlflow_uri}", f"out_dir={tmp_path / 'r'}"],
        tmp_path,
        isolated_data_cache,
    )
    assert report.returncode == 0, report.stderr[-3000:]
    assert "Runs left out of the statistics (1, not FINISHED)" in report.stdout
    assert f"FAILED, run {failed.info.run_id}: `DataError: {bad}:2: malformed JSON" in report.stdout
    assert "malformed JSON" in (tmp_path / "r" / "runs.csv").read_text()


@pytest.mark.parametrize(
    ("content", "args", "expected", "hint"),
    [
        ('{"prompt": "1+1?", "chosen": \n', ["segmenter=tags"], "pairs.jsonl:1: malformed JSON", None),
        (
            '{"prompt": "1+1?", "chosen": "<Rq>a</Rq>", "rejected": "<Rq>b</Rq>"}\n',
            ["segmenter=fields"],
            "pairs.jsonl:1: field 'Rq_a': missing field (row has: chosen, prompt, rejected)",
            "hint: rows have chosen/rejected text: use segmenter=tags or segmenter=rules",
        ),
    ],
)
def test_bad_data_is_one_line_exit_2_and_leaves_nothing_behind(
    tmp_path: Path,
    mlflow_uri: str,
    isolated_data_cache: Path,
    content: str,
    args: list[str],
    expected: str,
    hint: str | None,
) -> None:
    (tmp_path / "pairs.jsonl").write_text(content)
    done = run_hipo(
        ["train", *TINY, "data=jsonl", "data.path=pairs.jsonl", *args, f"logger.tracking_uri={mlflow_uri}"],
        tmp_path,
        isolated_data_cache,
        env={"HIPO_TEST_FORBID_MODEL_LOAD": "1"},
    )
    assert done.returncode == 2, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith(("error:", "hint:"))]
    assert lines[0] == f"error: {expected}" or lines[0].startswith(f"error: {expected}")
    assert (lines[1] if hint else None) == hint and len(lines) == (2 if hint else 1)
    assert "Traceback" not in done.stderr + done.stdout
    assert runs_of(mlflow_uri, "hipo") == []  # no run
    assert not (tmp_path / "outputs").exists()  # no output folder left behind
    cache = isolated_data_cache / "data"
    assert not cache.exists() or not any(cache.iterdir())  # no cache entry

    if hint is None:  # once is enough: --verbose adds the traceback
        verbose = run_hipo(
            ["train", "--verbose", *TINY, "data=jsonl", "data.path=pairs.jsonl", *args], tmp_path, isolated_data_cache
        )
        assert verbose.returncode == 2 and "Traceback" in verbose.stderr


def test_config_errors_exit_2_naming_the_key(tmp_path: Path, isolated_data_cache: Path) -> None:
    """A typo (refused by the schema at composition) and a value that cannot work (refused before anything is
    read); tests/app/test_bad_input_properties.py covers many more values in-process."""
    typo = run_hipo(["train", "model=tiny", "loss.bta=0.3"], tmp_path, isolated_data_cache)
    assert typo.returncode == 2 and "bta" in typo.stderr
    fsdp = run_hipo(["train", *TINY_TRAIN, "trainer=fsdp", "trainer.accelerator=cpu"], tmp_path, isolated_data_cache)
    assert fsdp.returncode == 2 and "error: trainer.strategy=fsdp needs GPUs" in fsdp.stderr
    assert not (tmp_path / "outputs").exists()
