#!/bin/bash
# One device run, two studies side by side on one GPU (about 8 minutes on an H200):
#  1. the compute target in steps (benchmarks/step_budget.py): width 1/4 and 1/8 with
#     full+lr8x-cosine+perc0 at 25 % of the teacher's steps, 3 seeds each; width 1/8 at 50 % (seed 0);
#     full+lr8x-cosine (perceptual and KD on) at 25 % for both widths (seed 0);
#  2. the Wesnoth teacher of benchmarks/own_data.sh with many more steps than a CPU hour gives:
#     the earlier-recipe command of docs/own-images.md (G64/D32) and the balanced one (G32/D64), 6 minutes each with snapshots
#     every minute, scored in-domain by benchmarks/own_data_progress.py (pretrained/wesnoth-classifier).
# Run from the repository root on a machine with torch and no network. Data and wheels travel in .gpu/:
#   mkdir -p .gpu/whl && pip download --no-deps torch-fidelity lpips torch-pruning -d .gpu/whl
#   cp /usr/share/datasets/fashion-mnist/{t10k-*,train-labels-*} .gpu/
#   zcat /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz | xz -9 > .gpu/train-images-idx3-ubyte.xz
#   tar -C /usr/share/games/wesnoth/1.16/data/core/images -cf - units | xz -9 > .gpu/wesnoth-units.tar.xz
# (xz keeps the tree under the device's 64 MiB). Outputs go to $OUT. SMOKE=1 DEV=cpu checks it in minutes.
# CELLS="WIDTH:RECIPE:SEED:FRACTION ..." replaces the step-budget cells, WESNOTH=0 leaves out the teachers.
set -u
OUT=${OUT:-/tmp/gpuout}; DEV=${DEV:-cuda}; SMOKE=${SMOKE:-0}; PY=${PY:-python3}
mkdir -p $OUT
P0=full+lr8x-cosine+perc0
CELLS=${CELLS:-"0.25:$P0:0:0.25 0.25:$P0:1:0.25 0.25:$P0:2:0.25 0.125:$P0:0:0.25 0.125:$P0:1:0.25 0.125:$P0:2:0.25
  0.25:full+lr8x-cosine:0:0.25 0.125:full+lr8x-cosine:0:0.25 0.125:$P0:0:0.5"}
WESNOTH=${WESNOTH:-1}
if [ "$SMOKE" = 1 ]; then NS=200; WMIN=0.4; WSNAP=0.2; CAP=3; WNS=200  # fractions / 125
else NS=10000; WMIN=${WES_MIN:-6}; WSNAP=1,2,3,4,5,6; CAP=${CAP:-5.5}; WNS=2000; fi
if [ "$DEV" = cuda ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
else export PYTHONPATH=$PWD; fi
D=/tmp/gpudata; mkdir -p $D
[ -f $D/train-images-idx3-ubyte.gz ] || { cp .gpu/*.gz $D/ && xz -dc .gpu/train-images-idx3-ubyte.xz | gzip -1 > $D/train-images-idx3-ubyte.gz; }
export GANKD_DATA=$D PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
W=/usr/share/games/wesnoth/1.16/data/core/images
[ -d $W/units ] || { mkdir -p $W && xz -dc .gpu/wesnoth-units.tar.xz | tar -C $W -xf -; }
L=$OUT/logs; mkdir -p $L
nvidia-smi -L > $L/gpu.txt 2>&1; $PY -c "import torch,sys;print(torch.__version__, torch.cuda.is_available(), sys.version)" >> $L/gpu.txt 2>&1
SB="$PY benchmarks/step_budget.py --device $DEV --num-samples $NS --max-minutes $CAP --out /tmp/sb --runs /tmp/sbruns"
T="$PY -m gankd train-teacher --data wesnoth-units --resolution 32 --num-classes 0 --diffaug color,translation,cutout --max-minutes $WMIN --snapshot-minutes $WSNAP --no-progress --device $DEV"
T0=$(date +%s)
if [ "$WESNOTH" = 1 ]; then
  $T --out /tmp/wes/teacher > $L/wes.log 2>&1 &
  $T --out /tmp/wes_bal/teacher --set generator.base_channels=32 --set discriminator.base_channels=64 > $L/wes_bal.log 2>&1 &
fi
for c in $CELLS; do  # WIDTH:RECIPE:SEED:FRACTION, one process each
  IFS=: read -r w r s f <<< "$c"; [ "$SMOKE" = 1 ] && f=$(python3 -c "print($f / 125)")
  $SB --widths $w --recipes $r --seeds $s --fractions $f > $L/sb_w${w}_${r}_s${s}_f$f.log 2>&1 &
done
wait
echo "train+score wall $(( $(date +%s) - T0 )) s" >> $L/gpu.txt
P="$PY benchmarks/own_data_progress.py --evaluator pretrained/wesnoth-classifier --num-samples $WNS --device $DEV"
if [ "$WESNOTH" = 1 ]; then
  $P --run /tmp/wes/teacher --out /tmp/prog/progress_gpu > $L/prog.log 2>&1 &
  $P --run /tmp/wes_bal/teacher --out /tmp/prog/progress_gpu_balanced > $L/prog_bal.log 2>&1 &
fi
$SB --table-only > $L/sb_table.log 2>&1
wait
echo "total wall $(( $(date +%s) - T0 )) s" >> $L/gpu.txt
nvidia-smi > $L/nvidia-smi.txt 2>&1
[ "$WESNOTH" = 1 ] || { tar -cf $OUT/results.tar -C /tmp sb -C $OUT logs && rm -r $L; ls -la $OUT; exit 0; }
cp /tmp/wes/teacher/metrics.jsonl $L/wes_metrics.jsonl; cp /tmp/wes_bal/teacher/metrics.jsonl $L/wes_bal_metrics.jsonl
tar -cf $OUT/results.tar -C /tmp sb prog -C $OUT logs && rm -r $L
for r in wes wes_bal; do  # the teachers (G and D) for compress on the CPU, in parts under 16 MiB
  tar -C /tmp/$r/teacher -cf - generator train_config.json | split -b 15m - $OUT/${r}_teacher.tar.part
done
ls -la $OUT
