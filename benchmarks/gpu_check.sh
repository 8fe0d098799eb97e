#!/usr/bin/env bash
# GPU checks, one script, under 10 minutes on one card: the gpu-marked tests (bfloat16 fit step,
# 8-bit bitsandbytes load and training step, p(Yes) on the GPU equal to the CPU's in float32, the
# predictions writer under one-GPU DDP), then the scoring and training speed rows of ours against
# TALLRec's procedures on the GPU (python -m benchmarks.speed --device cuda). Writes
# benchmarks/results/gpu_check.log and benchmarks/results/speed-cuda-*.json.
#   bash benchmarks/gpu_check.sh            # PY=/path/to/python to use another interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
LOG=benchmarks/results/gpu_check.log
mkdir -p benchmarks/results
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
  lscpu | grep -E "Model name"
  timeout 300 "$PY" -m pytest -q -m gpu -rA tests/test_gpu.py
  for dtype in bfloat16 float32; do
    timeout 270 "$PY" -m benchmarks.speed --device cuda --dtype "$dtype" --n 256 --batch 32 --train_n 256 --passes 3
  done
} 2>&1 | tee "$LOG"
