#!/usr/bin/env bash
# One-shot GPU benchmark of the default preset (ResNet50 + 4-block ViT + 6-layer PatchGAN):
# 1024 and 2048 px, batch 2, bf16 autocast (trainer.precision=auto), with and without
# trainer.compile; activation checkpointing of encoder, fusion and decoder at 2048 px (plus a
# run with encoder + fusion only, to measure what the decoder's share costs). Training steps
# reuse one real batch kept on the GPU, so the numbers are the model's, not the loader's; the
# loader is measured on its own in the same folder.
#
#   bash experiments/benchmarks/gpu_bench.sh [OUT_DIR]      # default: experiments/benchmarks/gpu-<date>
#
# Writes OUT_DIR/{default.json,default.md,quick.json,quick.md,memory_estimate.txt,nvidia-smi.txt}.
# Takes ~15-25 minutes on an H100: for a GPU of your own. A short lent GPU runs gpu_check.py
# instead (~4 minutes; its numbers are in experiments/benchmarks/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-experiments/benchmarks/gpu-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
python -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))" | tee "$OUT/torch.txt"

# What the estimate says before anything runs (meta tensors, no GPU memory used).
for ckpt in "encoder fusion decoder" "encoder fusion"; do
  python experiments/benchmarks/memory_estimate.py --resolution 2048 --batch 2 --checkpoint $ckpt
done > "$OUT/memory_estimate.txt"

# Default preset at 1024 and 2048 px: samples/s, max allocated memory, model TFLOP/s and MFU
# against the device's dense bf16 peak; the compiled variants run after the eager ones.
python -m neuropbr.bench suite=full device=cuda sections=[train] \
  'only=[default/1024,default/2048]' repeats=2 out="$OUT/default.json"

# The rest of the standard GPU suite (quick_test, default and high_quality at 512-1024 px, the
# fast_iteration preset, data loading PNG vs cache with 0/2/N workers).
python -m neuropbr.bench suite=standard device=cuda out="$OUT/standard.json"

echo "wrote $OUT"
