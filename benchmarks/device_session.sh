#!/usr/bin/env bash
# One GPU call does it all: the check of every CUDA training path, the speed benchmark, then the
# full-profile runs of a plan (most important first, within a time budget), then the records
# packed into files under $OUT.
#
# Prepare here (CPU), once per session:
#   mkdir -p .carry && cp $FAIRENS_DATA/cifar10-jpeg.zip .carry/
#   .venv/bin/pip wheel --no-deps -w .carry airbench==0.1.8
# Then one device call (carry [".carry"], timeout_s 600):
#   bash benchmarks/device_session.sh
# and unpack what comes back:  cat <files_at>/records.tar.part-* | tar xf - -C records/full
#
# The working tree travels with the carry: keep both under 64 MiB (on 2026-12-01 the zip is 43 MB
# and the tracked tree 15 MB, 11 MB of it the shipped records in records/full).
# Time (section budgets below, each soft: a section starts no work predicted to overrun it):
# ~1 min of check (its own process: a CUDA error there cannot poison the benchmark), ~4.5 min of
# benchmark with the decoding (the packed 20-member run is saved as chapter bottom_k's pool),
# BUDGET_S of training, ~1 min of start-up and packing: inside one 10-min call.
set -uo pipefail
export PYTHONUNBUFFERED=1
export FAIRENS_DATA=${FAIRENS_DATA:-$PWD/.carry} FAIRENS_CACHE=${FAIRENS_CACHE:-/tmp/fairens-cache}
OUT=${OUT:-/tmp/fairens-out}
PLAN=${PLAN:-benchmarks/plans/full.jsonl}
BUDGET_S=${BUDGET_S:-120}         # seconds of full-profile training after the benchmark
CHECK_ARGS=${CHECK_ARGS:---sections check --check-budget-s 50}
BENCH_ARGS=${BENCH_ARGS:---sections profile,airbench,packed,vectorized,loop,mfu --save-records --profile-budget-s 15 --airbench-budget-s 30 --packed-budget-s 120 --vectorized-budget-s 45 --loop-budget-s 25 --mfu-budget-s 20}
PACKED=${PACKED:-/tmp/fairens-packed}
mkdir -p "$OUT"

if ls .carry/*.whl >/dev/null 2>&1; then  # benchmark-only packages (airbench)
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .carry/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}

{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
    python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__)"
    echo "== check: one training step of every model x CUDA path"
    # shellcheck disable=SC2086
    python3 benchmarks/gpu_speed.py --data-root "$FAIRENS_DATA" --json "$OUT/gpu_check.json" $CHECK_ARGS
    echo "== speed: profile, airbench, packed / vectorized / loop, MFU"
    # shellcheck disable=SC2086
    python3 benchmarks/gpu_speed.py --data-root "$FAIRENS_DATA" --json "$OUT/gpu_speed.json" $BENCH_ARGS
    echo "== full-profile runs: $PLAN, budget ${BUDGET_S}s"
    python3 -m fairens_core train --plan "$PLAN" --quiet --budget-s "$BUDGET_S" --summary "$OUT/summary.jsonl"
    python3 -m fairens_core pack --plan "$PLAN" --out "$PACKED"
    date -u
} 2>&1 | tee "$OUT/session.log"

# Records come back as <= 15 MB pieces (each file from $OUT is limited to 16 MB).
if [ -d "$PACKED" ]; then
    tar cf - -C "$PACKED" . | split -b 15m - "$OUT/records.tar.part-"
fi
ls -la "$OUT"
