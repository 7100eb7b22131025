#!/usr/bin/env bash
# GPU check of issue #9 (multi-process training), at most ~4 minutes on a 1-8 GPU node, tiny model:
#   1. DDP over every GPU of the node (bf16-mixed), stopped by SIGTERM at step 2, then resume=auto: must end
#      FINISHED in one MLflow run with the same final weights as an uninterrupted run.
#   2. FSDP over every GPU (Lightning refuses FSDP on CPUs, so this is its only check): train, checkpoint, final/.
#   3. DeepSpeed stage 2, only where `deepspeed` is installed.
# Usage (repository root, the project's venv or VENV set): bash experiments/perf/gpu_multiprocess_check.sh [OUT_DIR]
set -uo pipefail
PY="${VENV:-.venv}/bin/python"
[ -x "$PY" ] || PY=python
OUT="$(realpath -m "${1:-${OUT:-experiments/perf/results/multiprocess}}")"
mkdir -p "$OUT"
GPUS=$("$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.device_count())")
echo "GPUs: $GPUS"
export PYTHONPATH="$PWD/tests/helpers"   # fault injection: HIPO_TEST_SIGNAL_AT_STEP (does nothing unless set)
COMMON=(model=tiny trainer.devices="$GPUS" trainer.max_steps=6 trainer.checkpoint_every_n_steps=3
        trainer.enable_progress_bar=false data.source.num_pairs=64 data.val_source.num_pairs=16
        "logger.tracking_uri=sqlite:///$OUT/mlflow.db")
hipo() { timeout 120 "$PY" -m hipo.cli "$@"; }

hipo train "${COMMON[@]}" trainer=ddp logger.experiment_name=ddp-ref output_dir="$OUT/ddp-ref" 2>&1 | tail -8
HIPO_TEST_SIGNAL_AT_STEP=2 HIPO_TEST_SIGNAL=TERM hipo train "${COMMON[@]}" trainer=ddp \
  logger.experiment_name=ddp output_dir="$OUT/ddp" 2>&1 | tail -3
echo "ddp stopped by SIGTERM: exit ${PIPESTATUS[0]} (expected 143)"
hipo train "${COMMON[@]}" trainer=ddp logger.experiment_name=ddp output_dir="$OUT/ddp" resume=auto 2>&1 | tail -8
"$PY" - "$OUT" <<'PY'
import sys
from pathlib import Path
from safetensors.torch import load_file
out = Path(sys.argv[1])
a, b = load_file(out / "ddp-ref/final/model.safetensors"), load_file(out / "ddp/final/model.safetensors")
print("DDP resumed vs uninterrupted, max |dw| =", max((a[k].float() - b[k].float()).abs().max().item() for k in a))
PY

hipo train "${COMMON[@]}" trainer=fsdp logger.experiment_name=fsdp output_dir="$OUT/fsdp" 2>&1 | tail -8
ls "$OUT/fsdp/final" "$OUT/fsdp/checkpoints" || echo "FSDP wrote no final/ or checkpoint"

if "$PY" -c "import deepspeed" 2>/dev/null; then
  hipo train "${COMMON[@]}" trainer=deepspeed logger.experiment_name=deepspeed output_dir="$OUT/deepspeed" 2>&1 | tail -8
else
  echo "deepspeed not installed: skipped"
fi
