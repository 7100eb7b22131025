"""How well-formed each run's greedy answers are: the share the tags segmenter reads as exactly one <Rq>, <Mt> and
<Ra> section each (what SFT taught), the share with tags of other names or stray closing tags, and the mean length.

Reads the ``eval/synthetic_easy/samples.json`` that every `hipo train` run of the study wrote (no model is loaded).
Usage::

    .venv/bin/python experiments/onpolicy_cpu/format_check.py --runs $OUT/arms/* --sft $OUT/sft \\
        --out experiments/onpolicy_cpu/report/format.md
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections import defaultdict
from pathlib import Path

from omegaconf import OmegaConf

from hipo.data.row_errors import RowLocation, SegmentationError
from hipo.data.segmenters.tags import TagsSegmenter

_TAG = re.compile(r"</?([A-Za-z]+)>")
_SECTIONS = ("Rq", "Mt", "Ra")


def answer_shape(segmenter: TagsSegmenter, text: str) -> tuple[bool, bool]:
    """(the three sections found once each, the text holds a tag other than the six of the sections)."""
    try:
        segmenter.segment_response({"prompt": "", "chosen": text}, "chosen", RowLocation("samples", 1))
        sections = True
    except SegmentationError:
        sections = False
    tags = _TAG.findall(text)
    stray = any(tag not in _SECTIONS for tag in tags) or len(tags) != 2 * len(_SECTIONS)
    return sections, stray


def run_shape(run_dir: Path, segmenter: TagsSegmenter) -> dict[str, float]:
    """{accuracy, well_formed, stray_tags, mean_chars} of one run's greedy answers."""
    records = json.loads((run_dir / "eval" / "synthetic_easy" / "samples.json").read_text())
    shapes = [answer_shape(segmenter, r["generation"]) for r in records]
    values = {
        "well_formed": sum(s for s, _ in shapes) / len(records),
        "stray_tags": sum(t for _, t in shapes) / len(records),
        "mean_chars": statistics.mean(len(r["generation"]) for r in records),
        "accuracy": sum(r["correct"] for r in records) / len(records),
        "problems": len(records),
    }
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, nargs="+", required=True)
    parser.add_argument("--sft", type=Path, required=True, help="the SFT run's output folder")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    segmenter = TagsSegmenter(prompt_field="prompt", style="tags")
    by_method: dict[str, list[dict[str, float]]] = defaultdict(list)
    by_method["sft"].append(run_shape(args.sft, segmenter))
    finished = [run for run in args.runs if (run / "eval" / "synthetic_easy" / "samples.json").is_file()]
    configs = {run: OmegaConf.load(run / ".hydra" / "config.yaml") for run in finished}
    for run_dir in sorted(finished, key=lambda run: int(configs[run].seed)):  # each method's seeds in order 0, 1, ...
        by_method[str(configs[run_dir].method)].append(run_shape(run_dir, segmenter))
    keys = ("accuracy", "well_formed", "stray_tags", "mean_chars")
    lines = [
        f"# The shape of the greedy answers on the {int(by_method['sft'][0]['problems'])} held-out problems "
        "(mean over seeds, then seeds 0, 1, 2)",
        "",
        "| method | runs | " + " | ".join(keys) + " |",
        "|---|---:|" + "---|" * len(keys),
    ]
    for method, runs in by_method.items():
        cells = []
        for key in keys:
            values = [run[key] for run in runs]
            digits = 1 if key == "mean_chars" else 3
            cells.append(f"{statistics.mean(values):.{digits}f} ({', '.join(f'{v:.{digits}f}' for v in values)})")
        lines.append(f"| {method} | {len(runs)} | " + " | ".join(cells) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
