#!/usr/bin/env bash
# The GPU checks for a session with a lent GPU (minutes of device time, at most 10 per command):
# throughput against the official code (OFFICIAL=DIR: a checkout of feidfoe/learning-not-to-learn
# carried to the device; unset: its rows are skipped and the re-creation runs instead), then the paper's full sigma^2=0.020 protocol
# (colored-mnist-paper: 100 warm-up + 100 LNL epochs, official settings) as ONE run on its own.
# The run stops itself before the command's time limit (SIGTERM -> checkpoint at a step boundary,
# exit 143) and the next call continues it exactly, so the protocol finishes across calls:
#
#   bash benchmarks/gpu_check.sh              # call 1: machine info, throughput, the run for $RUN_SECONDS
#   bash benchmarks/gpu_check.sh resume       # calls 2..n: continue the run for $RUN_SECONDS
#
# Results go to $OUT (the device tool's output folder; default /tmp/gpu-out): machine.txt,
# throughput.json, paper-lnl.json (summary when finished), paper-lnl-metrics.jsonl, *.log.
# Needs MNIST as .gz files in .gpu-data/ (gzip -c of the four raw files; the folder is git-ignored).
# EXTRA="k=v ..." is appended to the first call's run, e.g. a dry run on a CPU:
#   EXTRA="device=cpu data.train_size=512 train.epochs=3 train.pretrain_epochs=1" RUN_SECONDS=20 bash benchmarks/gpu_check.sh
set -u
OUT=${OUT:-/tmp/gpu-out}
RUN_SECONDS=${RUN_SECONDS:-420}
RUN_DIR=runs/gpu-paper-lnl          # inside the checkout: kept on the device between calls
mkdir -p "$OUT" /tmp/lnl-data/MNIST/raw
for f in .gpu-data/*.gz; do gunzip -c "$f" > "/tmp/lnl-data/MNIST/raw/$(basename "$f" .gz)"; done
export LNL_DATA_ROOT=/tmp/lnl-data LNL_CACHE_DIR=/tmp/lnl-cache PYTHONPATH=$PWD PYTHONUNBUFFERED=1

if [ "${1:-}" != "resume" ]; then
  { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; python3 -c "import torch; print(torch.__version__)"; nproc; } \
    > "$OUT/machine.txt" 2>&1
  OMP_NUM_THREADS=4 timeout 150 python3 benchmarks/throughput.py --device cuda --steps 300 --official-workers 8 \
    ${OFFICIAL:+--official "$OFFICIAL"} --json \
    > "$OUT/throughput.json" 2> "$OUT/throughput.log"
  rm -rf "$RUN_DIR"
  timeout -s TERM "$RUN_SECONDS" python3 -m lnl_cli train --preset colored-mnist-paper --out "$RUN_DIR" --json ${EXTRA:-} \
    > "$OUT/paper-lnl.json" 2> "$OUT/paper-lnl.log"
else
  timeout -s TERM "$RUN_SECONDS" python3 -m lnl_cli train --resume "$RUN_DIR" --json \
    > "$OUT/paper-lnl.json" 2> "$OUT/paper-lnl.log"
fi
echo "exit $? (0: finished; 124: paused at the time limit with a checkpoint, run again with 'resume')" >> "$OUT/paper-lnl.log"
cp "$RUN_DIR/metrics.jsonl" "$OUT/paper-lnl-metrics.jsonl" 2>/dev/null
tail -n 3 "$OUT/paper-lnl.log"; cat "$OUT/throughput.json" 2>/dev/null; cat "$OUT/paper-lnl.json"
