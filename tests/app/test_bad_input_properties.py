"""Property tests: random malformed rows and config values always end in a named error, with nothing written.

`hipo train` runs in-process on composed configs (the CLI turns the same errors into one line and exit code 2, see
tests/training/test_sweep_failures.py). Whatever is wrong, the error names the place -- ``file:line:`` for data,
the key for config -- and there is no MLflow run, no prepared-data cache entry, no output folder, and no model was
loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra.errors import HydraException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf.errors import OmegaConfBaseException

from hipo.app import train as train_app
from hipo.config.compose import compose_config
from hipo.data.row_errors import DataError
from hipo.errors import UserError

pytestmark = pytest.mark.slow  # 55 hypothesis examples, each composing and validating a full training config

GOOD = {"prompt": "What is 2 + 3?", "chosen": "<Rq>Add.</Rq><Mt>2 + 3 = 5</Mt><Ra>5</Ra>"}
GOOD["rejected"] = "<Rq>Add.</Rq><Mt>2 + 3 = 6</Mt><Ra>6</Ra>"
FIELDS = ("prompt", "chosen", "rejected")

# one malformed line: (text of the line, the field the error must name or None)
broken_lines = st.one_of(
    st.sampled_from(['{"prompt": "x", "chosen": ', "not json", "{'single': 'quotes'}", "[1, 2", '{"a": 1,}']).map(
        lambda text: (text, None)
    ),
    st.sampled_from(["[1, 2]", "3", '"a string"', "null", "true"]).map(lambda text: (text, None)),
    st.sampled_from(FIELDS).map(lambda f: (json.dumps({k: v for k, v in GOOD.items() if k != f}), f)),
    st.tuples(st.sampled_from(FIELDS), st.sampled_from([7, 2.5, ["a"], {"x": 1}, True])).map(
        lambda fv: (json.dumps({**GOOD, fv[0]: fv[1]}), fv[0])
    ),
    st.just((json.dumps({**GOOD, "prompt": "   "}), "prompt")),
)


@pytest.fixture
def no_model_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading weights fails the test: bad input must be found first."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded before the input was validated")

    monkeypatch.setattr(train_app, "build_policy", refuse)


def _nothing_written(tmp_path: Path, cache: Path) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert all(not client.search_runs([e.experiment_id]) for e in client.search_experiments())
    data_cache = cache / "data"
    assert not data_cache.exists() or not any(data_cache.iterdir())
    assert not (tmp_path / "run").exists()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(good_before=st.integers(0, 4), broken=broken_lines, good_after=st.integers(0, 3))
def test_malformed_rows_name_the_file_line_and_field(
    tmp_path: Path, mlflow_uri: str, isolated_data_cache: Path, no_model_load: None, good_before, broken, good_after
) -> None:
    text, field = broken
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join([json.dumps(GOOD)] * good_before + [text] + [json.dumps(GOOD)] * good_after) + "\n")
    cfg = compose_config(
        [
            "model=tiny",
            "data=jsonl",
            f"data.path={path}",
            "segmenter=tags",
            f"logger.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
            f"output_dir={tmp_path / 'run'}",
        ]
    )
    with pytest.raises(DataError) as caught:
        train_app.train(cfg)
    message = str(caught.value)
    assert message.startswith(f"{path}:{good_before + 1}:"), message
    if field is not None:
        assert f"field {field!r}" in message, message
    _nothing_written(tmp_path, isolated_data_cache)


BAD_VALUES = [
    ("data.batch_size", "0"),
    ("data.batch_size", "-3"),
    ("data.eval_batch_size", "0"),
    ("data.max_length", "0"),
    ("data.val_fraction", "1.0"),
    ("data.val_fraction", "-0.5"),
    ("optim.lr", "0"),
    ("optim.lr", "-0.001"),
    ("optim.scheduler", "cosinus"),
    ("optim.warmup_steps", "-1"),
    ("trainer.precision", "fp8"),
    ("trainer.devices", "0"),
    ("trainer.devices", "-1"),
    ("trainer.max_steps", "0"),
    ("trainer.num_nodes", "2"),
    ("trainer.strategy", "deepspeed"),
    ("trainer.strategy", "fsdp"),
    ("model.name_or_path", "/no/such/model"),
    ("model.dtype", "float8"),
    ("model.adapter_path", "/no/such/adapter"),
    ("loss.beta", "-1"),
    ("loss.beta", "0"),
    ("segmenter.on_failure", "explode"),
    ("data.source.num_pairs", "abc"),
    ("loss.bta", "0.3"),
    ("trainer.max_stepz", "3"),
    ("resume", "/no/such.ckpt"),
    ("segments", "[Rq,Rq,Ra]"),
]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad=st.sampled_from(BAD_VALUES))
def test_bad_config_values_name_the_key_before_anything_is_read(
    tmp_path: Path, mlflow_uri: str, isolated_data_cache: Path, no_model_load: None, bad
) -> None:
    key, value = bad
    overrides = [
        "model=tiny",
        "trainer.accelerator=cpu",
        f"logger.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"output_dir={tmp_path / 'run'}",
        f"{key}={value}",
    ]
    try:
        cfg = compose_config(overrides)
    except (HydraException, OmegaConfBaseException) as error:  # the schema refused it at composition
        assert key.split(".")[-1] in str(error)
        return
    with pytest.raises(UserError) as caught:
        train_app.train(cfg)
    leaf = key.split(".")[-1]
    assert leaf in str(caught.value) or key.split(".")[0] in str(caught.value), str(caught.value)
    _nothing_written(tmp_path, isolated_data_cache)
