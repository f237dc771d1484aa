#!/usr/bin/env bash
# The whole CIFAR-10 paper through the real product on one offline CUDA machine (issue 13): every preset
# (Table 1, Fig. 1b/c, Table 4, Fig. 1a, Fig. 2b) at scale=paper with the packed launcher, into ONE SQLite
# store under $OUT, then the report from that store. Run from the project root with, carried:
#   .whl/   the Hydra + MLflow wheels (../shared/gpu/wheels.sh .whl), for a Python that has only torch;
#   .data/cifar10-jpeg.tar.gz   the data archive.
# Brings back (at most 8 files, none deeper than $OUT/a/b): mlflow.db, log.txt, wall.txt, report.tgz,
# artifacts.tgz, nvidia-smi.txt, and with BENCH=1 packing.json (bench.packing on the GPU, run first). Commit mlflow.db as docs/results/gpu-h200/mlflow.db and regenerate the report from it:
#   python -m rethink.report --tracking-uri sqlite:///docs/results/gpu-h200/mlflow.db --scale paper --out docs/results/gpu-h200
# Presets share jobs (an identical FINISHED job is skipped), so a rerun after a cap resumes where it stopped.
# A CPU rehearsal of the same path (tiny budgets; what tests cannot show: the script itself; 35 s here):
#   OUT=/tmp/rehearse SCALE=cpu K=2 PRESETS="fig1bc fig2b" \
#     EXTRA="dataset.train_size=100 dataset.test_size=50 trainer.max_epochs=1" bash bench/gpu_paper.sh
set -u
OUT=${OUT:-/tmp/gpu-out}
SCALE=${SCALE:-paper}
K=${K:-auto}
PROCESSES=${PROCESSES:-auto}   # packs trained at once (hydra.launcher.processes)
PRESETS=${PRESETS:-table1 fig1bc table4 fig1a fig2b}
PRESET_CAP=${PRESET_CAP:-590}  # seconds per preset: a slow one cannot starve the rest of a lease
EXTRA=${EXTRA:-}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
if [ -f .data/cifar10-jpeg.tar.gz ]; then
  mkdir -p /tmp/data && tar -xzf .data/cifar10-jpeg.tar.gz -C /tmp/data
  export RETHINK_DATA=/tmp/data
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/nvidia-smi.txt"
store="sqlite:///$(cd "$OUT" && pwd)/mlflow.db"
if [ "${BENCH:-0}" = 1 ]; then  # aggregate images/s and share of peak against the pack size, first
  timeout 240 python3 -m bench.packing --device cuda --data "${RETHINK_DATA:-data}" --ks 1,2,4,8,16,32 --epochs 1 \
    --json "$OUT/packing.json" 2>&1 | tee -a "$OUT/log.txt"
fi
start=$(date +%s)
for preset in $PRESETS; do
  t0=$(date +%s)
  echo "=== $preset (cap ${PRESET_CAP}s)" | tee -a "$OUT/log.txt"
  # shellcheck disable=SC2086  # EXTRA is a list of overrides
  timeout "$PRESET_CAP" python3 -m rethink experiment="$preset" scale="$SCALE" hydra/launcher=packed \
    hydra.launcher.k="$K" hydra.launcher.processes="$PROCESSES" mlflow.tracking_uri="$store" hydra.sweep.dir="/tmp/multirun/$preset" \
    paths.checkpoints=/tmp/checkpoints $EXTRA \
    >> "$OUT/log.txt" 2>&1
  echo "$preset rc=$? $(( $(date +%s) - t0 )) s" | tee -a "$OUT/wall.txt"
done
echo "all presets $(( $(date +%s) - start )) s" | tee -a "$OUT/wall.txt"
python3 -m rethink.report --tracking-uri "$store" --scale "$SCALE" --out /tmp/report >> "$OUT/log.txt" 2>&1
tar -czf "$OUT/report.tgz" -C /tmp report
# The runs' artifacts (learning curves, configs) sit next to the store, too deep to come back: one archive.
[ -d "$OUT/artifacts" ] && tar -czf "$OUT/artifacts.tgz" -C "$OUT" artifacts && rm -rf "$OUT/artifacts"
rm -f "$OUT/mlflow.db.lock"
grep -E "Launching|training a pack|sweep:|ERROR" "$OUT/log.txt" | tail -n 40
cat "$OUT/wall.txt"
