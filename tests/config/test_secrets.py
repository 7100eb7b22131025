"""Secrets never enter a config: refused on the command line (never echoed), redacted wherever a config is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from hipo.cli import main
from hipo.config.secrets import REDACTED, is_secret_key, redact_overrides, redact_secrets, secret_overrides
from hipo.tracking.params import flatten_config

PLANTED = "sk-planted-9f3c2e71d4"


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("evaluate.judge.client.api_key", True),
        ("segmenter.decomposer.client.api_key", True),
        ("apikey", True),
        ("model.hf_token", True),
        ("x.password", True),
        ("evaluate.judge.client.api_key_env", False),  # the variable's name, not the key
        ("evaluate.generation.max_new_tokens", False),
        ("data.pad_token", False),
        ("model.tokenizer", False),
    ],
)
def test_secret_key_names(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


def test_redaction_of_configs_params_and_overrides() -> None:
    config = {"a": {"client": {"api_key": PLANTED, "api_key_env": "MY_KEY", "model": "m"}}, "l": [{"password": "p"}]}
    redacted = redact_secrets(config)
    assert redacted["a"]["client"] == {"api_key": REDACTED, "api_key_env": "MY_KEY", "model": "m"}
    assert redacted["l"] == [{"password": REDACTED}]
    assert config["a"]["client"]["api_key"] == PLANTED  # a copy: the input is untouched
    flat = flatten_config(config)
    assert flat["a.client.api_key"] == REDACTED and flat["a.client.api_key_env"] == "MY_KEY"
    assert PLANTED not in " ".join(redact_overrides([f"+a.client.api_key={PLANTED}", "seed=1"]))
    found = secret_overrides(["-m", "seed=1,2", f"++x.api_key={PLANTED}", "~y.api_key", "z.password=p"])
    assert found == ["x.api_key", "z.password"]  # a deletion (no value) sets nothing


@pytest.mark.parametrize("command", ["eval", "train", "segment"])
def test_cli_refuses_a_key_on_the_command_line_without_echoing_it(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    override = {"eval": "evaluate.judge.client.api_key", "train": "segmenter.decomposer.client.api_key"}.get(
        command, "segmenter.decomposer.client.api_key"
    )
    with pytest.raises(SystemExit) as exit_:
        main([command, "model=tiny", f"{override}={PLANTED}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert override in err and "api_key_env" in err
    assert PLANTED not in err
    assert list(tmp_path.iterdir()) == []  # nothing written (no Hydra output folder, no store)
