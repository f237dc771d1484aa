#!/usr/bin/env bash
# The prepared check for a lent GPU machine (see docs/performance.md). Needs the data archives in
# .data/ (carried); writes everything under $OUT. Each stage has its own time cap so that a slow
# stage cannot starve the rest of a 15-minute lease.
set -u
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
mkdir -p /tmp/data && tar -xzf .data/cifar10-jpeg.tar.gz -C /tmp/data
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/nvidia-smi.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
python3 -m pytest --version >/dev/null 2>&1 && echo "pytest present"
stage() { local cap=$1; shift; echo "=== $* (cap ${cap}s)"; timeout "$cap" "$@" 2>&1 | tee -a "$OUT/log.txt"; }
stage 150 python3 -m bench.throughput --device cuda --data /tmp/data --no-conventional --epochs 2 --json "$OUT/throughput.json"
stage 100 python3 -m bench.concurrency --device cuda --data /tmp/data --model inception --ks 1,2,4,8 \
    --train-size 10000 --epochs 2 --json "$OUT/concurrency.json"
stage "${PAPER_CAP:-190}" python3 -m bench.paper_runs --device cuda --data /tmp/data --out "$OUT/paper_runs" \
    --budget-s "${PAPER_BUDGET:-110}" \
    --runs mlp_1x512:labels:0,mlp_1x512:labels:1,inception:labels:0,inception:labels:1,mlp_1x512:labels:0.5
stage 120 python3 -m bench.throughput --device cuda --data /tmp/data --no-conventional --epochs 2 --compile \
    --models mlp_1x512,inception --json "$OUT/throughput_compile.json"
echo "=== done"
