#!/bin/bash
# One device run: evaluator candidates + a longer teacher on the GPU, then cuda evals.
# Run from the repository root on a GPU machine with torch (no network needed): first put the four
# Fashion-MNIST .gz files in .gpu/data/ and the torch-fidelity and lpips wheels in .gpu/whl/
# (pip download --no-deps torch-fidelity lpips -d .gpu/whl); outputs go to $OUT.
# SMOKE=1 runs tiny sizes on CPU to check the script.
set -u
OUT=${OUT:-/tmp/gpuout}; mkdir -p $OUT
DEV=${DEV:-cuda}; SMOKE=${SMOKE:-0}
if [ "$SMOKE" = 1 ]; then EP=1; ST=3; MM=0.2; NS=200; else EP=30; ST=60000; MM=${TEACHER_MIN:-5.0}; NS=10000; fi
if ls .gpu/whl/*.whl >/dev/null 2>&1 && [ "$DEV" = cuda ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
else export PYTHONPATH=$PWD; fi
export GANKD_DATA=$PWD/.gpu/data PYTHONUNBUFFERED=1
PY=${PY:-python3}
L=$OUT/logs; mkdir -p $L
nvidia-smi -L > $L/gpu.txt 2>&1; $PY -c "import torch,sys;print(torch.__version__, torch.cuda.is_available(), sys.version)" >> $L/gpu.txt 2>&1
T0=$(date +%s)
timeout 400 $PY -m gankd train-classifier --family vgg --out /tmp/evalA --epochs $EP --seed 0 --set model.base_channels=32 --set 'model.convs_per_stage=[1,2,2]' --set threads=4 --device $DEV --no-progress > $L/evalA.log 2>&1 &
timeout 400 $PY -m gankd train-classifier --family vgg --out /tmp/evalB --epochs $EP --seed 0 --set model.base_channels=32 --set 'model.convs_per_stage=[2,2,2]' --set threads=4 --device $DEV --no-progress > $L/evalB.log 2>&1 &
$PY -m gankd train-teacher --out /tmp/teacher --steps $ST --max-minutes $MM --set generator.base_channels=32 --set 'generator.channel_mults=[16,8,4,1]' --set discriminator.base_channels=32 --set sample_every=2500 --set checkpoint_every=2500 --set threads=4 --seed 0 --device $DEV --no-progress > $L/teacher.log 2>&1 &
wait
echo "train wall $(( $(date +%s) - T0 )) s" >> $L/gpu.txt
cp -r /tmp/teacher/metrics.jsonl /tmp/teacher/samples /tmp/teacher/train_config.json $L/ 2>/dev/null
mkdir -p $OUT/teacher && cp /tmp/teacher/generator/* $OUT/teacher/
# pick the evaluator: A (cheaper) if it reaches 93% test accuracy, else B
PICK=$($PY -c "
import json
a=json.load(open('/tmp/evalA/config.json'))['result']['test_acc']; b=json.load(open('/tmp/evalB/config.json'))['result']['test_acc']
print('/tmp/evalA' if a>=0.93 else '/tmp/evalB')")
echo "picked $PICK" >> $L/gpu.txt
cp $PICK/* pretrained/fmnist-evaluator/
E="$PY -m gankd eval --device $DEV --num-samples $NS"
timeout 150 $E --model /tmp/teacher/generator --role teacher --speed --no-onnx --out $L/new_teacher_eval.json > $L/eval_new.log 2>&1
timeout 60 $E --model pretrained/fmnist-teacher --role teacher --out $L/old_teacher_eval.json > $L/eval_old.log 2>&1
timeout 60 $E --model .gpu/student --metrics none --speed --no-onnx --out $L/student_speed.json > $L/eval_student.log 2>&1
tar -C /tmp -cf $OUT/evaluators.tar evalA evalB
tar -C $OUT -cf $OUT/logs.tar logs && rm -r $L
echo done
