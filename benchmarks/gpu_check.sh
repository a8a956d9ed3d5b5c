#!/usr/bin/env bash
# The GPU checks for a session with a lent GPU. A device command may run at most 10 minutes, so the work is
# cut into stages that each call runs in order while its time (CALL_SECONDS, default 540) allows; a stage
# that does not fit any more is deferred to the next call, and the long table stops itself before the call's
# end (SIGTERM -> every run checkpoints at a step boundary) and continues exactly in the next call:
#
#   bash benchmarks/gpu_check.sh            # call 1: starts over (removes $WORK and $TABLE_DIR), then stages 1-5
#   bash benchmarks/gpu_check.sh resume     # calls 2..n: the stages not done yet, then the table continues
#
# A stage 2-4 runs once, whatever its exit status (recorded in $WORK/stages.txt; delete its line there to
# run it again); the device command's timeout_s should be at least CALL_SECONDS plus a minute.
#
# Stages (times are estimates for an H100-class GPU, not measurements; each stage's limit in brackets):
#   1 machine     every call: nvidia-smi, torch and CUDA versions, GPU count, cores, CPU model      (seconds)
#   2 throughput  benchmarks/throughput.py --device cuda --steps 300 --official-workers 8 --compile
#                 [--official $OFFICIAL] --json: engine vs official code (OFFICIAL=DIR, a checkout of
#                 feidfoe/learning-not-to-learn carried to the device; unset: the re-creation instead), and
#                 every engine row again under torch.compile with first_step_s          [THROUGHPUT_SECONDS=300]
#                 about 3-6 min, mostly compiling; on its limit the rows timed so far are only in its log
#   3 packed      benchmarks/packed_sweep.py --device cuda --preset colored-mnist-paper --points 8 --jobs 8
#                 --epochs 2 --threads 2: 8 short runs one after another, then 8 at once  [PACKED_SECONDS=240]
#                 about 2-3 min
#   4 nccl        with 2 or more GPUs: torchrun --standalone --nproc_per_node=2 -m lnl_cli train --preset smoke
#                 device=cuda train.sync_batchnorm=true --json (NCCL, SyncBatchNorm; torchrun run as
#                 `python3 -m torch.distributed.run`, the same program); with fewer GPUs, a line in
#                 summary.txt says it was skipped and why                                    [NCCL_SECONDS=120]
#                 under a minute
#   5 table       the paper's table at the full protocol, 14 runs: seven sigma^2 (0.02 ... 0.05) x
#                   baseline: lnl sweep --preset colored-mnist-paper --grid data.color_var=... --set method=baseline
#                             --set train.epochs=100 --set train.pretrain_epochs=0 --out $TABLE_DIR/baseline
#                   LNL:      lnl sweep --preset colored-mnist-paper --grid data.color_var=... --set method=lnl
#                             --out $TABLE_DIR/lnl          (the preset's 100 warm-up + 100 LNL epochs)
#                 Two sweeps, side by side, TABLE_JOBS (default 14) runs at once in all (half each). The
#                 baseline is its own sweep because the preset's train.epochs=200 would make a baseline
#                 train 200 epochs: the paper's Baseline row is the 100-epoch stage (the LNL runs train
#                 their own 100-epoch warm-up, as `lnl train --preset colored-mnist-paper` does). It runs
#                 under `timeout -s TERM` for what is left of the call (less STOP_MARGIN=40 s; TABLE_SECONDS
#                 caps it); `resume` runs the same sweeps again, which skip finished points and resume
#                 interrupted ones exactly. Each call's seconds are appended to $TABLE_DIR/wall-seconds.txt;
#                 once both sweeps are finished, `lnl compare` of both goes to table-compare.json.
#                 About 20-45 min of GPU time in all (3-6 calls), the estimate least sure of all: at the
#                 H100 rates in RESULTS.md (baseline 32.7k, LNL 13.8k images/s) one LNL run alone takes about
#                 10 min and a baseline 3, 14 in a row about 90 min, and 14 at once are assumed 2-4x faster.
#
# Results go to $OUT (the device tool's output folder, at most 8 files come back; default /tmp/gpu-out),
# everything done so far in every call:
#   summary.txt          machine of each call, every stage's exit status and seconds (or why deferred or
#                        skipped), the table's progress and seconds per call, and at the end its table
#   throughput.json      stage 2                 packed_sweep.json   stage 3
#   nccl.json            stage 4's summary (only when it ran)
#   table-wall.txt       the table's seconds in each call and their sum
#   table-compare.json   lnl compare --json of the 14 runs (when finished)
#   logs.tar.gz          every stage's stderr and each table run's train.log
#   gpu-state.tar.gz     while the table is unfinished: $WORK and $TABLE_DIR (no plots) to continue on a fresh
#                        machine: put it at .gpu-state/gpu-state.tar.gz in the checkout (GPU_STATE) and call
#                        with `resume`; it is unpacked when $WORK is missing (best.pt is left out if the file
#                        would pass 15 MiB: the paper preset selects the last epoch, so a resume never reads it
#                        and writes it again at the next epoch's end; a finished run without it is read from
#                        last.pt, the same weights)
# Persistent state lives in the checkout (git-ignored runs/, kept on the device between calls): $WORK
# (runs/gpu-check: stage outputs, logs, done-markers) and $TABLE_DIR (runs/gpu-table).
#
# MNIST: the four raw files gzipped into .gpu-data/ (gzip -c FILE > .gpu-data/FILE.gz; untracked files
# travel to the device: do not commit them), unpacked to /tmp/lnl-data; without them $LNL_DATA_ROOT must
# hold MNIST/raw. EXTRA="k=v ..." adds --set values to both table sweeps. SKIP="throughput packed" leaves
# stages out, ONLY="nccl" runs only those. Exit status: 0 everything done, 124 work left (call again with
# `resume`), 1 a stage failed (see summary.txt).
#
# DRY_RUN=1: every stage on the CPU with tiny settings (device=cpu, 256-512 images, 1-4 epochs, 2 points,
# 2 sigma^2), into runs/gpu-check-dry and runs/gpu-table-dry; stage 4 then runs the same torchrun command
# with device=cpu (gloo, not NCCL) and still notes that NCCL was skipped. It proves the script, not the GPU:
#   DRY_RUN=1 TABLE_SECONDS=30 bash benchmarks/gpu_check.sh; DRY_RUN=1 bash benchmarks/gpu_check.sh resume
# Other settings: PYTHON (python3), WORK, TABLE_DIR, TABLE_MIN_SECONDS (60: less left, the table waits).
set -u
shopt -s nullglob
MODE=${1:-start}
DRY=${DRY_RUN:-0}
[ "$DRY" = 1 ] && SUFFIX=-dry || SUFFIX=
OUT=${OUT:-/tmp/gpu-out}
PY=${PYTHON:-python3}
CALL_SECONDS=${CALL_SECONDS:-540}
STOP_MARGIN=${STOP_MARGIN:-40}
THROUGHPUT_SECONDS=${THROUGHPUT_SECONDS:-300}
PACKED_SECONDS=${PACKED_SECONDS:-240}
NCCL_SECONDS=${NCCL_SECONDS:-120}
TABLE_MIN_SECONDS=${TABLE_MIN_SECONDS:-60}
TABLE_JOBS=${TABLE_JOBS:-14}
WORK=${WORK:-runs/gpu-check$SUFFIX}
TABLE_DIR=${TABLE_DIR:-runs/gpu-table$SUFFIX}
GPU_STATE=${GPU_STATE:-.gpu-state/gpu-state.tar.gz}
STATE_LIMIT=$((15 * 1024 * 1024))

mkdir -p "$OUT"
gz=(.gpu-data/*.gz)
if [ ${#gz[@]} -gt 0 ]; then
  mkdir -p /tmp/lnl-data/MNIST/raw
  for f in "${gz[@]}"; do gunzip -c "$f" > "/tmp/lnl-data/MNIST/raw/$(basename "$f" .gz)"; done
  export LNL_DATA_ROOT=/tmp/lnl-data
fi
if [ ! -f "${LNL_DATA_ROOT:-}/MNIST/raw/train-images-idx3-ubyte" ]; then
  echo "no MNIST: put the four raw files, gzipped, in .gpu-data/, or set LNL_DATA_ROOT to a folder holding MNIST/raw" >&2
  exit 3
fi
export LNL_CACHE_DIR=${LNL_CACHE_DIR:-/tmp/lnl-cache} PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1

if [ "$MODE" != resume ]; then
  rm -rf "$WORK" "$TABLE_DIR"
elif [ ! -d "$WORK" ] && [ -f "$GPU_STATE" ]; then
  tar -xzf "$GPU_STATE"   # the state a call on another machine left: stage outputs and the unfinished table
fi
mkdir -p "$WORK/logs" "$TABLE_DIR"
touch "$WORK/stages.txt" "$WORK/calls.txt"
CALL=$(( $(wc -l < "$WORK/calls.txt") + 1 ))
echo "call $CALL ($MODE) $(date -u +%FT%TZ)" >> "$WORK/calls.txt"
NOTES=()   # this call's deferrals and skips
FAILED=0

left() { echo $(( CALL_SECONDS - SECONDS )); }
note() { NOTES+=("$1"); echo "$1" >&2; }
left_out() { [[ " ${SKIP:-} " == *" $1 "* ]] || { [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $1 "* ]]; }; }
# want NAME BUDGET: whether stage NAME runs now (not left out, not done in an earlier call, fits in this call)
want() {
  local name=$1 budget=$2
  if left_out "$name"; then
    note "$name: left out (SKIP/ONLY)"; return 1
  fi
  grep -q "^$name:" "$WORK/stages.txt" && return 1
  if [ "$(left)" -lt "$budget" ]; then
    note "$name: deferred to the next call (resume): $(left) s left in this call, the stage may take $budget s"
    return 1
  fi
  echo "stage $name (limit $budget s, $(left) s left in this call)" >&2
}
# done NAME CODE START [TEXT]: record a stage as done (in every later call too, whatever its exit status)
done_stage() {
  local what="exit $2"
  [ "$2" = 124 ] && what="stopped at its limit (exit 124)"
  echo "$1: $what after $(( SECONDS - $3 )) s, call $CALL${4:+; $4}" >> "$WORK/stages.txt"
  [ "$2" = 0 ] || FAILED=1
}
sweep_finished() {  # the sweep in $1 has finished every point
  "$PY" -c "import json, sys; sys.exit(json.load(open(sys.argv[1]))['status'] != 'finished')" "$1/sweep.json" 2>/dev/null
}

# ------------------------------------------------------------------ 1 machine (every call: it may be another one)
GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
{ echo "== call $CALL ($MODE), $(date -u +%FT%TZ)"
  if command -v nvidia-smi > /dev/null; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  else echo "nvidia-smi: not found"; fi
  "$PY" -c "import torch; print('torch', torch.__version__, '| cuda', torch.version.cuda, '| GPUs', torch.cuda.device_count())"
  echo "cores $(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  [ "$DRY" = 1 ] && echo "DRY_RUN=1: CPU, tiny settings; no figure here says anything about a GPU"
} >> "$WORK/machine.txt" 2>&1

# ------------------------------------------------------------------ 2 throughput
if want throughput "$THROUGHPUT_SECONDS"; then
  start=$SECONDS
  if [ "$DRY" = 1 ]; then
    args=(--device cpu --steps 2 --warmup 1 --train-size 256 --batch-size 32 --official-workers 0 --rows baseline)
  else
    args=(--device cuda --steps 300 --official-workers 8)
  fi
  OMP_NUM_THREADS=4 timeout -s TERM "$THROUGHPUT_SECONDS" "$PY" benchmarks/throughput.py "${args[@]}" --compile \
    ${OFFICIAL:+--official "$OFFICIAL"} --json > "$WORK/throughput.json" 2> "$WORK/logs/throughput.log"
  done_stage throughput $? $start
fi

# ------------------------------------------------------------------ 3 packed sweep
if want packed "$PACKED_SECONDS"; then
  start=$SECONDS
  rm -rf "$WORK/packed"
  if [ "$DRY" = 1 ]; then
    args=(--device cpu --preset smoke --points 2 --jobs 2 --epochs 1 --threads 1
          --set data.train_size=256 data.test_size=128 data.val_size=64 train.batch_size=64)
  else
    args=(--device cuda --preset colored-mnist-paper --points 8 --jobs 8 --epochs 2 --threads 2)
  fi
  timeout -s TERM "$PACKED_SECONDS" "$PY" benchmarks/packed_sweep.py "${args[@]}" --out "$WORK/packed" --json \
    > "$WORK/packed_sweep.json" 2> "$WORK/logs/packed_sweep.log"
  done_stage packed $? $start
fi

# ------------------------------------------------------------------ 4 two processes (NCCL)
if want nccl "$NCCL_SECONDS"; then
  start=$SECONDS
  rm -rf "$WORK/nccl-run"
  launch=("$PY" -m torch.distributed.run --standalone --nproc_per_node=2 -m lnl_cli train --preset smoke)
  if [ "$GPUS" -ge 2 ]; then
    timeout -s TERM "$NCCL_SECONDS" "${launch[@]}" device=cuda train.sync_batchnorm=true --out "$WORK/nccl-run" \
      --json > "$WORK/nccl.json" 2> "$WORK/logs/nccl.log"
    done_stage nccl $? $start "2 processes on 2 of $GPUS GPUs, NCCL"
  elif [ "$DRY" = 1 ]; then
    timeout -s TERM "$NCCL_SECONDS" "${launch[@]}" device=cpu train.sync_batchnorm=true train.num_threads=1 \
      data.train_size=256 data.test_size=128 data.val_size=64 train.batch_size=64 train.epochs=2 \
      train.pretrain_epochs=1 --out "$WORK/nccl-run" --json > "$WORK/nccl.json" 2> "$WORK/logs/nccl.log"
    done_stage nccl $? $start "NCCL skipped: only $GPUS GPU(s) on this machine; dry run: the same launch on the CPU (gloo)"
  else
    rm -f "$WORK/nccl.json"
    done_stage nccl 0 $start "skipped: only $GPUS GPU(s) on this machine, the 2-process NCCL path needs 2"
  fi
fi

# ------------------------------------------------------------------ 5 the table
VARS=0.02,0.025,0.03,0.035,0.04,0.045,0.05
BASE=(--set method=baseline --set train.epochs=100 --set train.pretrain_epochs=0)
LNL=(--set method=lnl)
FIXED=()
if [ "$DRY" = 1 ]; then
  VARS=0.02,0.05
  BASE=(--set method=baseline --set train.epochs=2 --set train.pretrain_epochs=0)
  LNL=(--set method=lnl --set train.epochs=4 --set train.pretrain_epochs=2)
  FIXED=(--set device=cpu --set train.num_threads=1 --set data.train_size=512 --set data.test_size=256
         --set train.batch_size=64)
  [ "$TABLE_MIN_SECONDS" -gt 20 ] && TABLE_MIN_SECONDS=20
fi
for kv in ${EXTRA:-}; do FIXED+=(--set "$kv"); done
BASE_JOBS=$(( TABLE_JOBS / 2 > 0 ? TABLE_JOBS / 2 : 1 ))
LNL_JOBS=$(( TABLE_JOBS - BASE_JOBS > 0 ? TABLE_JOBS - BASE_JOBS : 1 ))
table_sweep() {  # table_sweep SECONDS NAME JOBS ARGS...: one of the two sweeps, stopped by SIGTERM at SECONDS
  local seconds=$1 name=$2 jobs=$3
  shift 3
  echo "== call $CALL" >> "$WORK/logs/table-$name.log"
  timeout -s TERM "$seconds" "$PY" -m lnl_cli sweep --preset colored-mnist-paper --grid "data.color_var=$VARS" \
    "$@" "${FIXED[@]}" --jobs "$jobs" --out "$TABLE_DIR/$name" > /dev/null 2>> "$WORK/logs/table-$name.log"
}
table_done() { sweep_finished "$TABLE_DIR/baseline" && sweep_finished "$TABLE_DIR/lnl"; }
if left_out table; then
  note "table: left out (SKIP/ONLY)"
elif table_done; then
  echo "table: finished in an earlier call" >&2
elif [ $(( $(left) - STOP_MARGIN )) -lt "$TABLE_MIN_SECONDS" ]; then
  note "table: deferred to the next call (resume): $(left) s left in this call"
else
  seconds=$(( $(left) - STOP_MARGIN ))
  [ -n "${TABLE_SECONDS:-}" ] && [ "$TABLE_SECONDS" -lt "$seconds" ] && seconds=$TABLE_SECONDS
  echo "stage table: $seconds s in this call, $BASE_JOBS + $LNL_JOBS runs at once" >&2
  start=$SECONDS
  table_sweep "$seconds" baseline "$BASE_JOBS" "${BASE[@]}" & base_pid=$!
  table_sweep "$seconds" lnl "$LNL_JOBS" "${LNL[@]}" & lnl_pid=$!
  wait $base_pid; base_code=$?
  wait $lnl_pid; lnl_code=$?
  echo "call $CALL: $(( SECONDS - start )) s (baseline sweep exit $base_code, lnl sweep exit $lnl_code; 124: stopped at the call's limit)" \
    >> "$TABLE_DIR/wall-seconds.txt"
  for code in $base_code $lnl_code; do [ "$code" = 0 ] || [ "$code" = 124 ] || FAILED=1; done
fi

# ------------------------------------------------------------------ what comes back
points() {  # "finished/all" of the sweep in $1
  "$PY" -c "import json, sys
try:
    d = json.load(open(sys.argv[1]))
    print(f\"{d['counts']['finished']}/{len(d['points'])} points finished ({d['status']})\")
except OSError:
    print('not started')" "$1/sweep.json"
}
rm -f "$OUT/table-compare.json" "$OUT/gpu-state.tar.gz"
if [ -f "$TABLE_DIR/wall-seconds.txt" ]; then
  { cat "$TABLE_DIR/wall-seconds.txt"
    echo "total: $(grep -o '^call [0-9]*: [0-9]*' "$TABLE_DIR/wall-seconds.txt" | awk '{s += $3} END {print s + 0}') s"
  } > "$OUT/table-wall.txt"
fi
if table_done; then
  "$PY" -m lnl_cli compare "$TABLE_DIR/baseline" "$TABLE_DIR/lnl" --sort data.color_var --ascending --json \
    > "$OUT/table-compare.json" 2>> "$WORK/logs/compare.log"
  "$PY" -m lnl_cli compare "$TABLE_DIR/baseline" "$TABLE_DIR/lnl" --sort data.color_var --ascending \
    > "$WORK/table.txt" 2>> "$WORK/logs/compare.log"
fi
{ cat "$WORK/machine.txt"
  echo "== stages"
  cat "$WORK/stages.txt"
  for line in "${NOTES[@]}"; do echo "$line"; done
  echo "== table ($TABLE_DIR)"
  echo "baseline: $(points "$TABLE_DIR/baseline")"
  echo "lnl:      $(points "$TABLE_DIR/lnl")"
  cat "$OUT/table-wall.txt" 2>/dev/null
  if table_done; then cat "$WORK/table.txt"
  elif left_out table; then echo "left out in this call (SKIP/ONLY)"
  else echo "unfinished: call again with 'resume'"; fi
} > "$OUT/summary.txt"
for f in throughput.json packed_sweep.json nccl.json; do [ -f "$WORK/$f" ] && cp "$WORK/$f" "$OUT/$f"; done
tar -czf "$OUT/logs.tar.gz" "$WORK/logs" "$TABLE_DIR"/*/*/train.log "$WORK"/packed/*/*/train.log
if ! table_done; then
  state=(--exclude='*.png' --exclude=tensorboard --exclude="$WORK/packed" --exclude="$WORK/nccl-run" "$WORK" "$TABLE_DIR")
  tar -czf "$OUT/gpu-state.tar.gz" "${state[@]}"
  if [ "$(stat -c %s "$OUT/gpu-state.tar.gz")" -gt "$STATE_LIMIT" ]; then
    tar -czf "$OUT/gpu-state.tar.gz" --exclude=best.pt "${state[@]}"
  fi
fi
cat "$OUT/summary.txt"
ls -l "$OUT" >&2
[ "$FAILED" = 1 ] && exit 1
table_done || left_out table || exit 124
for stage in throughput packed nccl; do
  grep -q "^$stage:" "$WORK/stages.txt" || left_out $stage || exit 124
done
exit 0
