"""Best-of-K with a trained policy's implicit rewards as the verifier, against majority voting (stage 5 of the study).

Reads the K samples that ``hipo eval`` drew from the SFT model on held-out problems (``samples.json``, with n = K),
scores every sample with each trained run's implicit reward -- ``β (log π − log π_ref)``, π the run's adapter and
π_ref the SFT adapter it started from, per segment (tags segmenter) and for the whole response
(:mod:`hipo.onpolicy.rerank`) -- and reports, per run and per method (mean ± sd over seeds):

* best-of-K accuracy by the whole-response reward, and by the minimum reward over segments;
* the baselines of the same samples: pass@1 (a random sample), maj@K (majority vote), pass@K (an oracle).

Usage::

    .venv/bin/python experiments/onpolicy_cpu/rerank.py --samples <eval dir>/synthetic_easy/samples.json \\
        --sft outputs/onpolicy_cpu/sft/final --runs multirun/<date>/<time>/* --out experiments/onpolicy_cpu/report
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch
from omegaconf import OmegaConf

from hipo.app.builders import build_policy
from hipo.config.schema import ModelConfig
from hipo.data.segmenters.tags import TagsSegmenter
from hipo.data.tokenize import PreferenceTokenizer
from hipo.eval.benchmarks import load_benchmark_data
from hipo.eval.grading import answers_match
from hipo.eval.sampling_metrics import majority_vote
from hipo.losses.types import SegmentLogps
from hipo.onpolicy.rerank import SCORES, best_of_k, implicit_rewards, response_logps, segmented_responses


def load_samples(
    path: Path, benchmark: str, limit: int | None = None
) -> tuple[list[str], list[list[str]], torch.Tensor, float]:
    """(questions, K texts per problem, correct [P, K], maj@K) of a ``hipo eval`` samples file with n = K (its first
    ``limit`` problems when given)."""
    records = json.loads(path.read_text())[:limit]
    items = {item.id: item for item in load_benchmark_data(benchmark, limit=len(records)).items}
    questions = [items[r["id"]].question for r in records]
    texts = [[s["generation"] for s in r["samples"]] for r in records]
    correct = torch.tensor([[bool(s["correct"]) for s in r["samples"]] for r in records])
    majority = 0
    for record in records:
        winner, _ = majority_vote([s["extracted"] for s in record["samples"]], answers_match)
        majority += int(winner is not None and answers_match(winner, record["gold"]))
    return questions, texts, correct, majority / len(records)


def run_settings(run_dir: Path) -> tuple[str, float, int]:
    """(method, beta, seed) of a `hipo train` output folder, from its Hydra config."""
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    return str(cfg.method), float(cfg.loss.beta), int(cfg.seed)


def responses(questions: list[str], texts: list[list[str]]) -> list:
    """Every sample as a single-response pair, segmented by its tags (problem-major order)."""
    k = len(texts[0])
    prompts = [q for q in questions for _ in range(k)]
    return segmented_responses(TagsSegmenter(prompt_field="prompt"), prompts, [t for row in texts for t in row])


def logps_of(adapter: Path, pairs: list) -> SegmentLogps:
    """The samples' per-segment log-probs under the base model with ``adapter``."""
    bundle = build_policy(OmegaConf.structured(ModelConfig(adapter_path=str(adapter))), with_reference=False)
    return response_logps(bundle.policy, PreferenceTokenizer(bundle.tokenizer), pairs, batch_size=32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=Path, required=True)
    parser.add_argument("--benchmark", default="synthetic_easy")
    parser.add_argument("--sft", type=Path, required=True, help="the SFT run's final/ adapter (the reference)")
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="`hipo train` output folders")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=None, help="rerank the first N problems of the samples file")
    args = parser.parse_args()
    started = time.perf_counter()
    questions, texts, correct, majority = load_samples(args.samples, args.benchmark, args.limit)
    k = correct.shape[1]
    pairs = responses(questions, texts)
    reference = logps_of(args.sft, pairs)  # every run's reference: scored once
    rows, by_method = [], defaultdict(lambda: defaultdict(list))
    finished = [run for run in args.runs if (run / "final").is_dir()]
    for run_dir in sorted(finished, key=lambda run: run_settings(run)[2]):  # each method's seeds in order 0, 1, ...
        method, beta, seed = run_settings(run_dir)
        rewards = implicit_rewards(logps_of(run_dir / "final", pairs), reference, beta)
        values = {kind: best_of_k(rewards.score(kind).reshape(len(questions), k), correct) for kind in SCORES}
        rows.append({"run": str(run_dir), "method": method, "seed": seed, "beta": beta, **values})
        for kind, value in values.items():
            by_method[method][kind].append(value)
        print(
            f"{method:18s} seed {seed}: " + ", ".join(f"best-of-{k} by {n} {v:.3f}" for n, v in values.items()),
            flush=True,
        )
    pass1, pass_k = float(correct.float().mean()), float(correct.any(dim=1).float().mean())
    lines = [
        f"# Best-of-{k} by implicit reward, {len(questions)} held-out {args.benchmark} problems, K = {k} samples of "
        "the SFT model each",
        "",
        f"Baselines of the same samples: pass@1 {pass1:.3f} (a random sample), maj@{k} {majority:.3f} (majority "
        f"vote), pass@{k} {pass_k:.3f} (an oracle).",
        "",
        f"| method | seeds | best-of-{k} by whole reward | best-of-{k} by min segment reward |",
        "|---|---:|---|---|",
    ]
    for method, kinds in sorted(by_method.items()):
        cells = []
        for kind in SCORES:
            values = kinds[kind]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.3f} ± {spread:.3f} ({', '.join(f'{v:.3f}' for v in values)})")
        lines.append(f"| {method} | {len(kinds['whole'])} | {cells[0]} | {cells[1]} |")
    lines += ["", f"Scored in {time.perf_counter() - started:.0f} s."]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rerank.md").write_text("\n".join(lines) + "\n")
    (args.out / "rerank.json").write_text(
        json.dumps({"pass_at_1": pass1, "maj": majority, "pass_at_k": pass_k, "runs": rows}, indent=1)
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
