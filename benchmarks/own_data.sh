#!/usr/bin/env bash
# Your own images through every command, as docs/own-images.md shows them: an RGB data set that a fresh
# machine installs from Debian (Battle for Wesnoth's unit sprites, 21 faction folders = classes).
# Each step's wall time goes to $OUT/timing.json.
#
#   apt-get install -y wesnoth-1.16-data
#   bash benchmarks/own_data.sh     # TEACHER_MIN=40 COMPRESS_MIN=10 NUM_CLASSES=0 by default
#
# The teacher's discriminator is the classic DCGAN one (BatchNorm, non-saturating loss:
# TEACHER_ARGS="--loss ns --set discriminator.norm=batch", no DiffAugment). train-teacher's
# default, a spectral-norm discriminator with DiffAugment, sat at chance on these sprites and gave
# grey-brown blobs for 120 CPU minutes; that earlier chain is
#   RUNS=runs/wesnoth_uncond OUT=benchmarks/results/own_data TEACHER_MIN=120 SNAPSHOTS=20,40,60,80,100,120 \
#     DIFFAUG=color,translation,cutout TEACHER_ARGS= bash benchmarks/own_data.sh
# (there: without the colour jitter, DIFFAUG=translation,cutout, in-domain FID 596 vs 292 at 60 min;
# TEACHER_ARGS="--diffaug-p 0.5": 725). DIFFAUG sets --diffaug (empty: off); TEACHER_ARGS adds flags.
#
# DATA names any other data set, e.g. the 1,411 emoji folder (benchmarks/emoji_folder.py):
#   DATA=folder:data/emoji RUNS=runs/emoji_bn OUT=benchmarks/results/own_data_emoji DIFFAUG=translation \
#     SNAPSHOTS=5,10,20,30,40 bash benchmarks/own_data.sh
#
# It is unconditional (NUM_CLASSES=0): conditioned on the 21 factions (NUM_CLASSES= empty: the
# data's class folders) the samples within a class were nearly one figure. A teacher already in
# $RUNS/teacher is reused (its training time, from its metrics.jsonl, still goes to timing.json);
# RETRAIN=1 resumes it up to TEACHER_MIN. Snapshots at SNAPSHOTS minutes feed `python benchmarks/own_data_progress.py`.
#
# Runs on one CPU thread (OMP_NUM_THREADS=1) unless THREADS says otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
DATA=${DATA:-wesnoth-units}
RUNS=${RUNS:-runs/wesnoth_bn}
OUT=${OUT:-benchmarks/results/own_data_bn}
TEACHER_MIN=${TEACHER_MIN:-40}
SNAPSHOTS=${SNAPSHOTS:-10,20,30,40}
NUM_CLASSES=${NUM_CLASSES-0}
CLASSES=$([ -n "$NUM_CLASSES" ] && echo "--num-classes $NUM_CLASSES")
# one class per row for a conditional model, an 8x8 grid otherwise
SAMPLE=$([ "$NUM_CLASSES" = 0 ] && echo "--seeds 0-63 --nrow 8" || echo "--seeds 0-9 --classes all --nrow 10")
COMPRESS_MIN=${COMPRESS_MIN:-10}
DIFFAUG=${DIFFAUG-}
TEACHER_ARGS=${TEACHER_ARGS---loss ns --set discriminator.norm=batch}  # extra train-teacher flags
export OMP_NUM_THREADS=${THREADS:-1}
mkdir -p "$OUT" "$RUNS"
TIMING="$OUT/timing.json.tmp"
echo "{" > "$TIMING"
step() {  # step NAME command...
  local name=$1; shift
  local t0; t0=$(date +%s.%N)
  echo "+ $*" >&2
  "$@"
  printf '  "%s": {"seconds": %.1f, "command": "%s"},\n' "$name" "$(echo "$(date +%s.%N) - $t0" | bc)" "$*" >> "$TIMING"
}
G="$PY -m gankd"
[ -f "$RUNS/teacher/generator/model.safetensors" ] && [ -z "${RETRAIN:-}" ] || \
  step train_teacher $G train-teacher --data "$DATA" --resolution 32 $CLASSES \
    $([ -n "$DIFFAUG" ] && echo --diffaug "$DIFFAUG") $TEACHER_ARGS --out "$RUNS/teacher" --max-minutes "$TEACHER_MIN" --no-progress \
    --snapshot-minutes "$SNAPSHOTS" $([ -f "$RUNS/teacher/state.pt" ] && echo --resume)
$PY -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[1])][-1]; print('  \"teacher_run\": {\"steps\": %d, \"train_wall_s\": %.1f, \"from\": \"%s\"},' % (r['step'], r['wall_s'], sys.argv[1]))" \
  "$RUNS/teacher/metrics.jsonl" >> "$TIMING"
step sample_teacher $G sample --model "$RUNS/teacher/generator" $SAMPLE --out "$OUT/teacher_samples.png"
[ -f "$RUNS/w025/student/model.safetensors" ] || \
  step compress $G compress --teacher "$RUNS/teacher/generator" --width 0.25 --out "$RUNS/w025" \
    --max-minutes "$COMPRESS_MIN" --no-progress $([ -f "$RUNS/w025/state.pt" ] && echo --resume)
step sample_student $G sample --model "$RUNS/w025/student" $SAMPLE --out "$OUT/student_samples.png"
step eval_teacher $G eval --model "$RUNS/teacher/generator" --num-samples 5000 --speed --out "$OUT/eval_teacher.json"
step eval_student $G eval --model "$RUNS/w025/student" --teacher "$RUNS/teacher/generator" --num-samples 5000 \
  --speed --real-floor --out "$OUT/eval_student.json"
step report $G report "$OUT/eval_teacher.json" "$OUT/eval_student.json" --out "$OUT/report"
step export $G export --model "$RUNS/w025/student" --format onnx
cp "$RUNS/w025/teacher_vs_student.png" "$OUT/teacher_vs_student.png"
cp "$RUNS/teacher/train_config.json" "$OUT/teacher_train_config.json"
cp "$RUNS/w025/config.json" "$OUT/compress_config.json"
sed -i '$ s/,$//' "$TIMING"
echo "}" >> "$TIMING"
mv "$TIMING" "$OUT/timing.json"
cat "$OUT/timing.json"
