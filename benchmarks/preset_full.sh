#!/usr/bin/env bash
# `gankd compress --preset full` end to end on the shipped teacher, as a user runs it (val-split checks
# and checkpoint selection included), on ONE CPU thread, then its student on the test split (10k).
# Writes benchmarks/results/preset_full/{timing.json,eval_student.json} (the run's own log: RUN/metrics.jsonl).
#   bash benchmarks/preset_full.sh            # WIDTH=0.25 SEED=0 by default; about 40 minutes
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}; WIDTH=${WIDTH:-0.25}; SEED=${SEED:-0}
RUN=${RUN:-runs/preset_full_w${WIDTH}_s$SEED}; OUT=${OUT:-benchmarks/results/preset_full}
export OMP_NUM_THREADS=1
mkdir -p "$OUT"
t0=$(date +%s.%N)
$PY -m gankd compress --preset full --width "$WIDTH" --seed "$SEED" --out "$RUN" --set threads=1 --no-progress \
  $([ -f "$RUN/state.pt" ] && echo --resume)
t1=$(date +%s.%N)
$PY -m gankd eval --model "$RUN/student" --teacher fmnist-teacher --num-samples 10000 --out "$OUT/eval_student.json"
$PY - "$RUN" "$t0" "$t1" "$OUT/timing.json" <<'PY'
import json, sys
run, t0, t1, out = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
last = [json.loads(x) for x in open(f"{run}/metrics.jsonl") if '"train/wall_s"' in x][-1]
cfg = json.load(open(f"{run}/student/config.json"))
json.dump({"compress_wall_s": round(t1 - t0, 1), "train_wall_s": last["train/wall_s"], "steps": last["step"],
           "student_trained_steps": cfg.get("trained_steps"), "threads": 1,
           "command": "bash benchmarks/preset_full.sh"}, open(out, "w"), indent=1)
PY
cat "$OUT/timing.json"
