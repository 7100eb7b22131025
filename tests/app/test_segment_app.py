"""`hipo segment`: shows the segmentation a person should check, and counts what it skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hipo.app.segment import segment
from hipo.config.compose import compose_config

pytestmark = pytest.mark.slow  # `hipo segment` with the real tokenizer


def test_segment_prints_each_segment_with_token_counts(capsys: pytest.CaptureFixture[str]) -> None:
    result = segment(compose_config(["model=tiny", "num_examples=2"]))
    out = capsys.readouterr().out
    assert result["shown"] == 2
    assert out.count("=== pair") == 2
    for name in ("Rq", "Mt", "Ra"):
        assert f"⟦{name}⟧" in out and f"{name}=" in out  # delimited text and its token count


def test_segment_counts_rows_the_rules_cannot_segment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        {"prompt": "What is 2+3?", "chosen": "We add.\n\n2 + 3 = 5.\n\nThe answer is \\boxed{5}.", "rejected": ""},
        {
            "prompt": "What is 2+2?",
            "chosen": "We add.\n\n2 + 2 = 4.\n\nSo \\boxed{4}.",
            "rejected": "We add.\n\n2 + 2 = 5.\n\nSo \\boxed{5}.",
        },
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = segment(compose_config(["model=tiny", "data=jsonl", f"data.path={path}", "segmenter=rules"]))
    assert result["shown"] == 1
    assert result["stats"]["rows_read"] == 2
    assert "skipped" in capsys.readouterr().out
