#!/usr/bin/env bash
# What each part of the synthetic data buys: the CPU recipe at the Optuna study's budget (64 px,
# 3000 samples, 3 epochs; about 4 minutes a run on 2 cores) trained with one part of the generator
# taken away at a time, every model scored on the same held-out-family samples of the full
# generator (clean, dirty and perspective inputs), then one table of them all.
#   experiments/generalisation/data_ablation.sh OUT_DIR [training overrides, e.g. seed=7]
#   VARIANTS="full low-relief" experiments/generalisation/data_ablation.sh ...   (only these)
# Writes OUT_DIR/runs/<variant>/ (Hydra run dirs), OUT_DIR/eval/<variant>/*.json, prints the table.
set -euo pipefail
out=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out/runs" "$out/eval"

budget=(experiment=cpu data.resolution=64 data.num_samples=3000 trainer.max_epochs=3
  trainer.val_every_n_epochs=1 trainer.log_images_every_n_epochs=0 trainer.progress_bar=false)
one_lamp_only="data.light_setups.point=0 data.light_setups.sun=0 data.light_setups.multi=0 data.light_setups.area=0"
names=(full flash-only no-point no-sun no-multi no-area low-relief no-recolour no-weathering clean-only perspective)
changes=(
  ""
  "$one_lamp_only"
  "data.light_setups.point=0"
  "data.light_setups.sun=0"
  "data.light_setups.multi=0"
  "data.light_setups.area=0"
  "data.relief_tilt_deg=[0.3,8]"
  "data.recolour=false"
  "data.weathering=false"
  "data.renders=clean"
  "data.camera=perspective data.aligned=false"
)
# Evaluation keeps each run's own data settings (resolution, samples, seed: the same held-out
# samples for every variant) but puts back the generator's defaults for every key a variant
# changes (conf/data/synthetic.yaml and SyntheticDataConfig); evaluate_heldout.sh then picks
# clean, dirty and perspective inputs.
full_generator=(data.relief_tilt_deg=null data.light_setups.flash=0.3 data.light_setups.point=0.25
  data.light_setups.sun=0.2 data.light_setups.multi=0.15 data.light_setups.area=0.1
  data.recolour=true data.weathering=true data.camera=aligned data.aligned=true)

reports=()
for i in "${!names[@]}"; do
  name=${names[$i]}
  if [[ -n ${VARIANTS:-} && " $VARIANTS " != *" $name "* ]]; then
    continue
  fi
  read -r -a change <<< "${changes[$i]}"
  python -m neuropbr.train "${budget[@]}" "${change[@]}" "$@" hydra.run.dir="$out/runs/$name"
  "$here/evaluate_heldout.sh" "$out/runs/$name/checkpoints/best_model.pth" "$out/eval/$name" \
    "${full_generator[@]}" > "$out/eval/$name.md"
  reports+=("$name=$out/eval/$name")
done
python "$here/ablation_table.py" "${reports[@]}"
