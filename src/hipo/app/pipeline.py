"""`hipo pipeline experiment=NAME [overrides]`: the paper's whole pipeline in one command.

Each step is a command a user could also run alone, so a failed step can be rerun by hand:

1. **prepare** (in this process): the experiment's data is read, decomposed by its segmenter (for ``segmenter=llm``
   the LLM calls run concurrently and land in the reply cache), and tokenized into the prepared-data cache -- once
   per dataset version, before any training job starts, so parallel sweep jobs never pay twice for a request;
2. **train**: ``hipo train -m experiment=NAME [overrides]`` -- the experiment's sweep (methods x seeds); each job
   trains, evaluates on the benchmarks and has the judge score the answers (``evaluate.enabled`` and
   ``evaluate.judge.enabled`` in the experiment);
3. **report**: ``hipo report experiment=NAME`` into ``<output_dir>/report`` -- tables, tests against the baseline
   and plots of that sweep.

The first step that fails ends the pipeline with that step's exit code. Secrets stay in the environment: the child
commands inherit it, and no key is ever passed as an argument.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from hipo.app.child_steps import run_step
from hipo.errors import ConfigError

# overrides that only the training sweep understands are not passed to `hipo report`
_REPORT_PREFIXES = ("logger.",)


def _task_overrides() -> list[str]:
    """The overrides this command was called with (what the train step repeats)."""
    from hydra.core.hydra_config import HydraConfig

    return [str(o) for o in HydraConfig.get().overrides.task]


def prepare_once(cfg: DictConfig) -> dict[str, Any]:
    """Step 1: segments (decomposes) and tokenizes the experiment's data into the caches; returns its counts."""
    from hipo.app.builders import build_datamodule
    from hipo.app.train_setup import load_job_tokenizer

    tokenizer = load_job_tokenizer(cfg.model)
    datamodule = build_datamodule(cfg, tokenizer, paired=True)
    datamodule.setup("fit")
    return datamodule.stats.as_dict()


def pipeline_command(cfg: DictConfig) -> dict[str, Any]:
    """Runs prepare -> train (+ evaluation and judge) -> report; see the module docstring."""
    if not cfg.get("experiment"):
        raise ConfigError(
            "hipo pipeline needs experiment=NAME: the experiment's sweep says which methods and seeds run",
        )
    overrides = [o for o in _task_overrides() if not o.startswith(("hydra.run.", "output_dir="))]
    out_dir = Path(str(cfg.output_dir))
    timings: dict[str, float] = {}
    started = time.perf_counter()
    print("=== hipo pipeline: prepare (decomposition and tokenization, once, before training)", flush=True)
    stats = prepare_once(cfg)
    timings["prepare_s"] = time.perf_counter() - started
    print(f"prepared: {stats}", flush=True)
    timings["train_s"] = run_step("pipeline", "train", ["train", "-m", *overrides])
    report_args = [f"experiment={cfg.experiment}", f"out_dir={out_dir / 'report'}"]
    report_args += [o for o in overrides if o.startswith(_REPORT_PREFIXES)]
    timings["report_s"] = run_step("pipeline", "report", ["report", *report_args])
    print(f"\nhipo pipeline: done in {time.perf_counter() - started:.0f} s {timings}; report in {out_dir / 'report'}")
    return {"stats": stats, "timings": timings, "report_dir": str(out_dir / "report")}
