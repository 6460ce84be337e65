#!/usr/bin/env bash
# Score a checkpoint of `experiment=cpu` (or any family-split run) on the held-out families under
# three input conditions, each beside the constant / flat-normal / view-mean / photo-mean baselines.
#   experiments/generalisation/evaluate_heldout.sh CHECKPOINT OUT_DIR [extra evaluate overrides]
# Writes OUT_DIR/{clean,dirty,perspective}.json and prints the Markdown table of the README.
set -euo pipefail
checkpoint=$1 out=$2
shift 2
mkdir -p "$out"
here=$(dirname "$0")
# data=synthetic keeps the run's own data settings (same option) and lets these keys change them;
# data.cache=false: render only the validation samples, on the fly (the run cached every sample).
common=(checkpoint="$checkpoint" split=val data=synthetic data.cache=false "$@")
python -m neuropbr.evaluate "${common[@]}" data.renders=clean out="$out/clean.json"
python -m neuropbr.evaluate "${common[@]}" data.renders=dirty out="$out/dirty.json"
python -m neuropbr.evaluate "${common[@]}" data.renders=clean data.camera=perspective data.aligned=false \
  out="$out/perspective.json"
python "$here/report.py" "clean, aligned=$out/clean.json" "dirty, aligned=$out/dirty.json" \
  "clean, perspective=$out/perspective.json"
