#!/bin/bash
# The held-out label-encoding ablation of the CamVid LAD teacher (README, "A teacher that reads its
# label"): every variant trains STDC1-Seg on train[:300] and is scored on train[300:] (val untouched),
# half-size images, 96 px crops, batch 8, ITERS iterations, one seed; a finished run is reused, an
# unfinished one resumes. Usage: run_ablation.sh CAMVID_ROOT OUT [ITERS] [VARIANT...]
set -euo pipefail
ROOT=$1; OUT=$2; ITERS=${3:-600}; shift $(( $# >= 3 ? 3 : $# ))
LADSEG=${LADSEG:-ladseg}
COMMON=(data.root="$ROOT" "data.train_split=train[:300]" "data.val_split=train[300:]" "data.crop_size=[96,96]"
        train.iters="$ITERS" train.val_interval=$((ITERS / 2)) train.log_interval=50 train.amp=none run.seed=0)
TEACHER=configs/camvid/lad_teacher_stdc1_camvid_half.yaml
declare -A VARIANTS=(
  [supervised]="configs/camvid/stdc1_supervised_camvid_half.yaml"
  [reference]="$TEACHER"
  [onehot]="$TEACHER model.in_channels=15 method.encoder.kind=onehot"
  [boundary]="$TEACHER method.encoder.kind=boundary"
  [random_vectors]="$TEACHER model.in_channels=11 method.encoder.kind=random_vectors"
  [boundary_codes]="$TEACHER model.in_channels=5 method.encoder.kind=boundary_codes"
  [reference_drop30]="$TEACHER method.image_drop=0.3"
  [boundary_drop30]="$TEACHER method.encoder.kind=boundary method.image_drop=0.3"
  [reference_branch]="$TEACHER model.label_branch=true"  # the label through RITM's Conv1S branch, not conv1
  # readable first: fixed codes annealed to random ones over 2/3 of the run; scored with random codes
  [reference_anneal]="$TEACHER method.fixed_code_anneal=$((ITERS * 2 / 3)) method.eval_label=random"
)
ORDER=("${@:-boundary random_vectors onehot reference supervised boundary_codes boundary_drop30 reference_drop30}")
for name in ${ORDER[@]}; do
  read -r -a spec <<< "${VARIANTS[$name]}"
  echo "== $name"
  $LADSEG train "${spec[0]}" "${spec[@]:1}" "${COMMON[@]}" run.work_dir="$OUT/$name"
done
