#!/bin/bash
# Long-budget matrix cells on the GPU: widths x {scratch, full}, seed 0, equal 3-min budgets, 6 workers side by side.
# Run from the repository root on a GPU machine with torch (no network needed): first put the four
# Fashion-MNIST .gz files in .gpu/data/ and the torch-fidelity and lpips wheels in .gpu/whl/
# (pip download --no-deps torch-fidelity lpips -d .gpu/whl); outputs go to $OUT.
set -u
OUT=${OUT:-/tmp/gpuout2}; mkdir -p $OUT/logs
DEV=${DEV:-cuda}; MIN=${MIN:-3}; NS=${NS:-10000}; PY=${PY:-python3}
if [ "$DEV" = cuda ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
else export PYTHONPATH=$PWD; fi
export GANKD_DATA=$PWD/.gpu/data PYTHONUNBUFFERED=1
M="$PY benchmarks/matrix.py --minutes $MIN --widths 0.5,0.25,0.125 --recipes scratch,full --seeds 0 --device $DEV --out /tmp/gm --runs /tmp/gruns --eval-each --num-samples $NS"
for k in 0 1 2 3 4 5; do timeout ${WORKER_TIMEOUT:-330} $M --shard $k/6 > $OUT/logs/worker$k.log 2>&1 & done
wait
nvidia-smi > $OUT/logs/nvidia-smi.txt 2>&1
cd /tmp && tar -cf $OUT/gpu_matrix.tar --exclude=state.pt --exclude=tb --exclude=last --exclude=discriminator.safetensors --exclude=samples --exclude='*.png' gm gruns; cd - >/dev/null
tar -C $OUT -cf $OUT/logs.tar logs && rm -r $OUT/logs
ls -la $OUT; tar -tf $OUT/gpu_matrix.tar | grep -c json
