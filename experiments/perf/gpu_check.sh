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
  ATTN="perf.attn_implementation=flash_attention_2"; PACK=16384
else
  ATTN="perf.attn_implementation=sdpa"; PACK=2048
fi
echo "attention: $ATTN, pack_length $PACK"

timeout 330 "$PY" -m hipo.app.perf_command perf/shape=smollm2-1.7b perf/mix=realistic perf/suite=gpu_1.7b \
  perf.pairs_per_step=8 perf.warmup_steps=2 perf.steps=6 perf.num_batches=6 perf.pack_length=$PACK \
  perf.logprob_chunk_size=2048 perf.device=cuda perf.isolation=inline "$ATTN" \
  perf.out="$OUT/gpu_smollm2-1.7b.json" hydra.run.dir="$OUT/hydra-1.7b" 2>&1 | tee "$OUT/gpu_smollm2-1.7b.log" \
  || echo "1.7B suite failed or timed out (see the log)"

if "$PY" -c "import trl" 2>/dev/null; then
  timeout 240 "$PY" -m hipo.app.perf_command perf/shape=smollm2-1.7b perf/mix=realistic perf/suite=gpu_trl_1.7b \
    perf.pairs_per_step=8 perf.warmup_steps=2 perf.steps=4 perf.num_batches=4 perf.pack_length=$PACK \
    perf.logprob_chunk_size=2048 perf.device=cuda perf.isolation=inline "$ATTN" \
    perf.out="$OUT/gpu_trl_smollm2-1.7b.json" hydra.run.dir="$OUT/hydra-trl-1.7b" 2>&1 \
    | tee "$OUT/gpu_trl_smollm2-1.7b.log" || echo "TRL side by side failed or timed out (see the log)"
else
  echo "trl not installed (pip install -e '.[compare]'): TRL side by side skipped"
fi

PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True timeout 150 "$PY" -m hipo.app.perf_command perf/shape=qwen2.5-7b \
  perf/mix=realistic perf/suite=gpu_7b perf.pairs_per_step=8 perf.warmup_steps=1 perf.steps=3 \
  perf.num_batches=2 perf.pack_length=$PACK perf.logprob_chunk_size=1024 perf.device=cuda \
  perf.isolation=inline "$ATTN" perf.out="$OUT/gpu_qwen2.5-7b.json" hydra.run.dir="$OUT/hydra-7b" 2>&1 \
  | tee "$OUT/gpu_qwen2.5-7b.log" || echo "7B full fine-tune failed or timed out (see the log)"
