#!/usr/bin/env bash
# GPU check of issue #5 (H100 80 GB or H200), at most ~12 minutes:
#   1. SmolLM2-1.7B shape (random init), realistic mix, 8 pairs/step, bf16 full fine-tune: packed + cached reference
#      (goal >= 17k useful tok/s at <= 40 GiB) next to live / padded / DPO / gradient checkpointing / torch.compile.
#   1b. the same shape and mix, the project's best variant and a padded DPO next to TRL 1.16's DPOTrainer (live and
#      precomputed reference), when the [compare] extra is installed.
#   2. Qwen2.5-7B shape full fine-tune (bf16 weights + AdamW states, gradient checkpointing) with a cached reference:
#      must fit in 80 GB.
# Usage (repository root, the project's venv active or VENV set): bash experiments/perf/gpu_check.sh [OUT_DIR]
set -euo pipefail
PY="${VENV:-.venv}/bin/python"
[ -x "$PY" ] || PY=python
OUT="${1:-${OUT:-experiments/perf/results}}"
mkdir -p "$OUT"
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"

# flash-attention's varlen kernels attend within each packed sequence at no extra cost; without the package, sdpa
# gets the block-diagonal mask rebuilt from position_ids (dense rows: keep them shorter).
if "$PY" -c "import flash_attn" 2>/dev/null; then
  ATTN="bench.attn_implementation=flash_attention_2"; PACK=16384
else
  ATTN="bench.attn_implementation=sdpa"; PACK=2048
fi
echo "attention: $ATTN, pack_length $PACK"

timeout 330 "$PY" -m hipo.app.bench bench/shape=smollm2-1.7b bench/mix=realistic bench/suite=gpu_1.7b \
  bench.pairs_per_step=8 bench.warmup_steps=2 bench.steps=6 bench.num_batches=6 bench.pack_length=$PACK \
  bench.logprob_chunk_size=2048 bench.device=cuda bench.isolation=inline "$ATTN" \
  bench.out="$OUT/gpu_smollm2-1.7b.json" hydra.run.dir="$OUT/hydra-1.7b" 2>&1 | tee "$OUT/gpu_smollm2-1.7b.log" \
  || echo "1.7B suite failed or timed out (see the log)"

if "$PY" -c "import trl" 2>/dev/null; then
  timeout 240 "$PY" -m hipo.app.bench bench/shape=smollm2-1.7b bench/mix=realistic bench/suite=gpu_trl_1.7b \
    bench.pairs_per_step=8 bench.warmup_steps=2 bench.steps=4 bench.num_batches=4 bench.pack_length=$PACK \
    bench.logprob_chunk_size=2048 bench.device=cuda bench.isolation=inline "$ATTN" \
    bench.out="$OUT/gpu_trl_smollm2-1.7b.json" hydra.run.dir="$OUT/hydra-trl-1.7b" 2>&1 \
    | tee "$OUT/gpu_trl_smollm2-1.7b.log" || echo "TRL side by side failed or timed out (see the log)"
else
  echo "trl not installed (pip install -e '.[compare]'): TRL side by side skipped"
fi

PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout 150 "$PY" -m hipo.app.bench bench/shape=qwen2.5-7b \
  bench/mix=realistic bench/suite=gpu_7b bench.pairs_per_step=8 bench.warmup_steps=1 bench.steps=3 \
  bench.num_batches=2 bench.pack_length=$PACK bench.logprob_chunk_size=1024 bench.device=cuda \
  bench.isolation=inline "$ATTN" bench.out="$OUT/gpu_qwen2.5-7b.json" hydra.run.dir="$OUT/hydra-7b" 2>&1 \
  | tee "$OUT/gpu_qwen2.5-7b.log" || echo "7B full fine-tune failed or timed out (see the log)"
