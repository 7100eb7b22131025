"""Evaluation generation, side by side: plain batched ``model.generate`` vs HiPO's continuous-batching decode loop.

Loads the embedded default model (SmolLM2-135M-Instruct, as ``model=smollm2-135m`` does), takes the first GSM8K and
MATH500 test problems from ``$HIPO_SHARED_DIR/data/benchmarks/<name>/test.jsonl`` (read in place, never copied), renders
them with the default prompt template and times, for the same prompts and ``max_new_tokens``, greedy:

* ``generate_b8``: plain Hugging Face ``generate``, batches of 8 prompts sorted by token length (longest first, as
  HiPO's evaluation did before), left padding, the model's stop tokens;
* ``decode_b8``: ``hipo.eval.generation.generate_completions`` with ``batch_size=8`` (the same batch width);
* ``decode_auto``: the same with the default, memory-derived batch size.

Variants are interleaved round by round (the starting one rotating), so load changes of the shared machine hit all
of them alike. Useful tokens, for every variant: each completion's tokens up to and including its end-of-sequence
token. Prints tokens/s per round and in total, the ratios to ``generate_b8``, and whether the greedy texts are
identical. Usage::

    .venv/bin/python experiments/perf/eval_generation_perf.py --per-benchmark 8 --max-new-tokens 256 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from hipo.eval.benchmarks import shared_benchmark_path
from hipo.eval.generation import GenerationConfig, _stop_ids, generate_completions
from hipo.eval.prompts import render_prompt
from hipo.models.loading import load_model

QUESTION_KEYS = {"gsm8k": "question", "math500": "problem"}


def load_prompts(tokenizer, per_benchmark: int) -> list[str]:
    """The first ``per_benchmark`` questions of each benchmark, rendered with the default template."""
    prompts = []
    for name, key in QUESTION_KEYS.items():
        path = shared_benchmark_path(name)
        if path is None:
            raise SystemExit(f"no local copy of {name}: set HIPO_SHARED_DIR (<dir>/data/benchmarks/{name}/test.jsonl)")
        with path.open() as handle:
            rows = [json.loads(line) for _, line in zip(range(per_benchmark), handle, strict=False)]
        prompts += [render_prompt(tokenizer, row[key]) for row in rows]
    return prompts


def plain_generate(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int) -> tuple[list, float]:
    """Greedy HF ``generate`` in length-sorted batches; (token ids per prompt up to the first stop token, seconds)."""
    stop = _stop_ids(model, tokenizer)
    lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(prompts)), key=lambda index: -lengths[index])
    tokenizer.padding_side = "left"
    results: list[list[int]] = [[] for _ in prompts]
    started = time.perf_counter()
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        encoded = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            output = model.generate(
                **encoded,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=sorted(stop),
            )
        for row, index in enumerate(batch):
            ids = output[row, encoded["input_ids"].shape[1] :].tolist()
            cut = next((position + 1 for position, token in enumerate(ids) if token in stop), len(ids))
            results[index] = ids[:cut]
    return results, time.perf_counter() - started


def run_variant(name: str, model, tokenizer, prompts: list[str], max_new_tokens: int) -> dict:
    """One timed run of a variant: texts, useful tokens, seconds."""
    if name == "generate_b8":
        ids, seconds = plain_generate(model, tokenizer, prompts, max_new_tokens, 8)
        texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
        tokens = sum(len(row) for row in ids)
    else:
        batch_size = 8 if name == "decode_b8" else None
        config = GenerationConfig(max_new_tokens=max_new_tokens, batch_size=batch_size, progress=False)
        output = generate_completions(model, tokenizer, prompts, config)
        texts, tokens, seconds = [c[0] for c in output.completions], output.new_tokens, output.seconds
    return {"texts": texts, "tokens": tokens, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-benchmark", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", default="generate_b8,decode_b8,decode_auto")
    parser.add_argument("--out", default=None, help="optional JSON file for the raw numbers")
    args = parser.parse_args()
    model, tokenizer = load_model("embedded:smollm2-135m", dtype="float32")
    model.eval()
    prompts = load_prompts(tokenizer, args.per_benchmark)
    variants = args.variants.split(",")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, torch threads "
        f"{torch.get_num_threads()}, load average {os.getloadavg()}; {len(prompts)} prompts, "
        f"max_new_tokens {args.max_new_tokens}"
    )
    run_variant(variants[0], model, tokenizer, prompts[:2], 4)  # warm-up
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    for round_index in range(args.rounds):
        shift = round_index % len(variants)
        for name in variants[shift:] + variants[:shift]:
            run = run_variant(name, model, tokenizer, prompts, args.max_new_tokens)
            runs[name].append(run)
            print(
                f"round {round_index} {name:12s} {run['tokens']:5d} tokens {run['seconds']:7.1f} s "
                f"{run['tokens'] / run['seconds']:7.1f} tok/s  (load {os.getloadavg()[0]:.2f})",
                flush=True,
            )
    summary = {}
    for name, name_runs in runs.items():
        tokens, seconds = sum(r["tokens"] for r in name_runs), sum(r["seconds"] for r in name_runs)
        summary[name] = {"tokens": tokens, "seconds": seconds, "tok_s": tokens / seconds}
    base = summary[variants[0]]["tok_s"]
    reference = runs[variants[0]][0]["texts"]
    for name, values in summary.items():
        same = sum(a == b for a, b in zip(runs[name][0]["texts"], reference, strict=True))
        print(
            f"{name:12s} {values['tok_s']:7.1f} tok/s  ratio to {variants[0]} {values['tok_s'] / base:.2f}  "
            f"greedy texts identical to {variants[0]}: {same}/{len(reference)}"
        )
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
