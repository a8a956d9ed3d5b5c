#!/usr/bin/env bash
# One prepared GPU session (the device is lent for minutes): throughput against the reference,
# the paper's full sigma^2=0.020 protocol (baseline; LNL alternating and single-pass), and a sweep
# of short schedules, all runs in parallel processes sharing the GPU.
#
#   bash benchmarks/gpu_check.sh OUT_DIR [SECONDS_PER_RUN]
# Needs MNIST as .gz files in .gpu-data/ (gzip -c of the four raw files). EXTRA="k=v ..." is
# appended to every run (e.g. a tiny dry run on CPU: EXTRA="device=cpu data.train_size=256 train.epochs=2").
set -u
OUT=${1:-/tmp/gpu-out}
BUDGET=${2:-420}
EXTRA=${EXTRA:-}
mkdir -p "$OUT/runs" /tmp/lnl-data/MNIST/raw
for f in .gpu-data/*.gz; do gunzip -c "$f" > "/tmp/lnl-data/MNIST/raw/$(basename "$f" .gz)"; done
export LNL_DATA_ROOT=/tmp/lnl-data LNL_CACHE_DIR=/tmp/lnl-cache PYTHONPATH=$PWD OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; python3 -c "import torch; print(torch.__version__)"; nproc; } > "$OUT/machine.txt" 2>&1
python3 -c "from lnl_cli import load_config; from lnl_cli.data import load_dataset; load_dataset(load_config('colored-mnist'))"
if [ -z "$EXTRA" ]; then
  OMP_NUM_THREADS=4 timeout 150 python3 benchmarks/throughput.py --device cuda --steps 300 --ref-workers 8 --json \
    > "$OUT/throughput.json" 2> "$OUT/throughput.log"
fi
run() {
  local name=$1; shift
  timeout "$BUDGET" python3 -m lnl_cli train --out "$OUT/runs/$name" --json "$@" $EXTRA \
    > "$OUT/runs/$name.json" 2> "$OUT/runs/$name.log" &
}
run paper-baseline --preset colored-mnist-paper method=baseline train.epochs=100 train.pretrain_epochs=0
run paper-lnl-alternating --preset colored-mnist-paper
run paper-lnl-single --preset colored-mnist-paper lnl.step=single_pass
S="--preset colored-mnist train.epochs=20 train.pretrain_epochs=2 train.lr_decay_epochs=12 lnl.step=single_pass"
run s01-official-alt $S lnl.step=alternating train.lr=0.01 lnl.lambda=0.01 lnl.grl_scale=0.1
run s02-official     $S train.lr=0.01 lnl.lambda=0.01 lnl.grl_scale=0.1
run s03-l0.1         $S train.lr=0.01 lnl.lambda=0.1 lnl.grl_scale=0.1
run s04-l1           $S train.lr=0.01 lnl.lambda=1.0 lnl.grl_scale=0.1
run s05-g1           $S train.lr=0.01 lnl.lambda=0.01 lnl.grl_scale=1.0
run s06-l0.1-g1      $S train.lr=0.01 lnl.lambda=0.1 lnl.grl_scale=1.0
run s07-l1-g1        $S train.lr=0.01 lnl.lambda=1.0 lnl.grl_scale=1.0
run s08-lr.03-l.1-g.3 $S train.lr=0.03 lnl.lambda=0.1 lnl.grl_scale=0.3
run s09-lr.03-l1-g1  $S train.lr=0.03 lnl.lambda=1.0 lnl.grl_scale=1.0
run s10-lr.05-l.1-g1 $S train.lr=0.05 lnl.lambda=0.1 lnl.grl_scale=1.0
run s11-pre1-l.1-g.3 $S train.pretrain_epochs=1 lnl.lambda=0.1 lnl.grl_scale=0.3
run s12-pre5-l.1-g.3 $S train.pretrain_epochs=5 lnl.lambda=0.1 lnl.grl_scale=0.3
run s13-grl-only     $S lnl.lambda=0.0 lnl.grl_scale=1.0
run s14-entropy-only $S lnl.lambda=1.0 lnl.grl_scale=0.0
wait
tar czf "$OUT/runs.tar.gz" --exclude='s*/checkpoint.pt' -C "$OUT" runs && rm -rf "$OUT/runs"
for f in "$OUT"/*.json; do echo "== $f"; cat "$f"; done
