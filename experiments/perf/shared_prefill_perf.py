"""K samples per prompt, side by side: one shared prefill (the prompt's KV cache copied K times) against K prefills.

``hipo pairs`` samples K responses per training problem with the decode loop's ``n = K``: each prompt is prefilled
once ([1, L] tokens) and its cache rows repeated K times. The alternative is the prompt given K times with
``n = 1``: K prefills of the same L tokens. Both run the same decode loop with the same number of concurrent
sequences (``batch_size x n``), the same sampling settings and seeds, interleaved round by round (the starting
variant rotating), on the same prompts:

* ``synthetic_easy``: the on-policy study's prompts (one-step problems of the generator's training split, the
  question alone as the user message: ~40 tokens with the chat template);
* ``gsm8k``: GSM8K test questions with the default evaluation template (~130 tokens), read in place from
  ``$HIPO_SHARED_DIR/data/benchmarks/gsm8k/test.jsonl`` (timing only: nothing is trained on or kept).

Prints generated tokens/s of each variant per round and in total, prompt tokens prefilled, and the ratio.
Usage::

    HIPO_SHARED_DIR=../shared .venv/bin/python experiments/perf/shared_prefill_perf.py --prompts 16 --k 8 \\
        --max-new-tokens 96 --rounds 2 --model-path <sft run>/final
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from hipo.data.synthetic.problems import generate_problems
from hipo.eval.benchmarks import shared_benchmark_path
from hipo.eval.generation import GenerationConfig, generate_completions
from hipo.eval.prompts import DEFAULT_PROMPT_TEMPLATE, render_prompt
from hipo.models.loading import load_model


def prompt_sets(tokenizer, count: int) -> dict[str, list[str]]:
    """The two prompt sets of the module docstring (gsm8k only when a local copy exists)."""
    easy = [p.question for p in generate_problems(count, seed=0, split="train", level="one_step")]
    sets = {"synthetic_easy": [render_prompt(tokenizer, q, "{question}") for q in easy]}
    path = shared_benchmark_path("gsm8k")
    if path is not None:
        with path.open() as handle:
            rows = [json.loads(line) for _, line in zip(range(count), handle, strict=False)]
        sets["gsm8k"] = [render_prompt(tokenizer, row["question"], DEFAULT_PROMPT_TEMPLATE) for row in rows]
    return sets


def run(model, tokenizer, prompts: list[str], k: int, shared: bool, args: argparse.Namespace, seed: int) -> dict:
    """One timed generation of K samples per prompt, shared prefill or K independent ones."""
    batch = args.batch_prompts
    config = GenerationConfig(
        max_new_tokens=args.max_new_tokens,
        batch_size=batch if shared else batch * k,  # the same concurrent sequences either way
        do_sample=True,
        temperature=0.8,
        n=k if shared else 1,
        seed=seed,
        progress=False,
    )
    inputs = prompts if shared else [p for p in prompts for _ in range(k)]
    started = time.perf_counter()
    output = generate_completions(model, tokenizer, inputs, config)
    seconds = time.perf_counter() - started
    prompt_tokens = sum(len(ids) for ids in tokenizer(inputs, add_special_tokens=False)["input_ids"])
    return {"tokens": output.new_tokens, "seconds": seconds, "prefill_tokens": prompt_tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--batch-prompts", type=int, default=4, help="prompts decoded at once (x K sequences)")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model-path", default="embedded:smollm2-135m", help="a model, or a LoRA adapter folder")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    adapter = Path(args.model_path) / "adapter_config.json"
    if adapter.is_file():
        from peft import PeftModel

        base, tokenizer = load_model("embedded:smollm2-135m", dtype="float32")
        model = PeftModel.from_pretrained(base, args.model_path).merge_and_unload()
    else:
        model, tokenizer = load_model(args.model_path, dtype="float32")
    model.eval()
    flags = [f for f in ("avx512_bf16", "amx_bf16", "avx512f", "avx2") if f in Path("/proc/cpuinfo").read_text()]
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus ({', '.join(flags)}), torch "
        f"threads {torch.get_num_threads()}; K={args.k}, {args.prompts} prompts per set, {args.batch_prompts} "
        f"prompts x K sequences at once, max_new_tokens {args.max_new_tokens}, model {args.model_path}"
    )
    results: dict[str, dict[str, list[dict]]] = {}
    for name, prompts in prompt_sets(tokenizer, args.prompts).items():
        run(model, tokenizer, prompts[:1], 2, True, args, 0)  # warm-up
        results[name] = {"shared": [], "independent": []}
        for round_index in range(args.rounds):
            order = ["shared", "independent"] if round_index % 2 == 0 else ["independent", "shared"]
            for variant in order:
                record = run(model, tokenizer, prompts, args.k, variant == "shared", args, seed=round_index)
                results[name][variant].append(record)
                print(
                    f"{name:15s} round {round_index} {variant:11s} {record['tokens']:6d} tokens "
                    f"{record['seconds']:7.1f} s {record['tokens'] / record['seconds']:7.1f} tok/s, "
                    f"{record['prefill_tokens']:6d} prompt tokens prefilled",
                    flush=True,
                )
        totals = {
            variant: sum(r["tokens"] for r in runs) / sum(r["seconds"] for r in runs)
            for variant, runs in results[name].items()
        }
        print(
            f"{name:15s} shared {totals['shared']:.1f} tok/s, independent {totals['independent']:.1f} tok/s: "
            f"speed-up {totals['shared'] / totals['independent']:.2f}x"
        )
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
