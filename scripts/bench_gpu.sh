#!/usr/bin/env bash
# Issue 10's training benchmark on one GPU: every family (RCNN-96 at 24x24 and 32x32,
# RecNet-60-1280, C-RNN at 227) x compile mode (eager, Inductor, CUDA graphs) x precision
# (fp32 with TF32, bf16) x channels_last (off, on), through scripts/bench_train.py.
#
#   bash scripts/bench_gpu.sh [OUT]   # OUT: a new folder, relative to the repository root
#                                     # (default outputs/bench-gpu/UTC-DATE-TIME)
#
# One process per (family, precision, layout), JOBS at a time: they compile in parallel on
# the host's cores and take turns on the GPU for timing and profiling (--lock), so that no
# two time at once. The others still compile meanwhile, which takes host cores from a
# launch-bound (eager) step: JOBS=1 times on a quiet host, at the price of serial compiles.
# Writes OUT/<family>-<precision>-<layout>.jsonl (one JSON line per variant, with
# scripts/bench_train.py's fields) and .log (its stderr), OUT/table.md (the Markdown table
# of every line), OUT/env.txt (commit, GPU, torch). Exit 1 when a job failed
# (the others' results are kept; its .log says why).
#
# Environment (defaults in brackets): PYTHON [.venv/bin/python where it exists, else python3:
# a GPU machine's image brings its own torch; PY is the older name], DEVICE [cuda], FAMILIES [all
# four], MODES [off default reduce-overhead], PRECISIONS [fp32 bf16], LAYOUTS [off on],
# JOBS [4], COMPILE_THREADS [2] (Inductor's compile workers per job), STEPS (steps and
# rounds per variant for every family; default: --steps 50 --rounds 3, C-RNN --steps 10
# --rounds 3), EXTRA (more bench_train.py arguments and overrides, e.g. "--batch 128").
# A tiny run on CPU (checks the script, measures nothing):
#   DEVICE=cpu FAMILIES=rcnn96-24 MODES=off PRECISIONS=fp32 STEPS="--steps 1 --rounds 1" \
#     EXTRA="--batch 4 --warmup 1 --profile-steps 1 model.K=8" bash scripts/bench_gpu.sh /tmp/b
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-outputs/bench-gpu/$(date -u +%Y%m%d-%H%M%S)}
if [[ -n ${PYTHON:-${PY:-}} ]]; then PY=${PYTHON:-$PY}
elif [[ -x .venv/bin/python ]]; then PY=.venv/bin/python
else PY=python3; fi
if ! command -v "$PY" > /dev/null; then
    echo "bench_gpu.sh: no Python at PYTHON=$PY; name one whose torch is installed" >&2
    exit 2
fi
# rcnnexp from this checkout, installed or not (scripts/bench_train.py imports it)
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
DEVICE=${DEVICE:-cuda}
FAMILIES=${FAMILIES:-rcnn96-24 rcnn96-32 recnet60-1280 crnn227}
MODES=${MODES:-off default reduce-overhead}
PRECISIONS=${PRECISIONS:-fp32 bf16}
LAYOUTS=${LAYOUTS:-off on}
JOBS=${JOBS:-4}
COMPILE_THREADS=${COMPILE_THREADS:-2}
EXTRA=${EXTRA:-}

if [[ -e $OUT ]]; then
    echo "bench_gpu.sh: $OUT exists; name a new folder (results are never overwritten)" >&2
    exit 2
fi
mkdir -p "$OUT"
{
    echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
    nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv 2>&1 || true
} > "$OUT/env.txt"

steps_for() {
    if [[ -n ${STEPS:-} ]]; then echo "$STEPS"
    elif [[ $1 == crnn227 ]]; then echo "--steps 10 --rounds 3"
    else echo "--steps 50 --rounds 3"; fi
}

declare -A job_name=()
failed=0
reap() {  # wait for one job; note it when it failed
    local pid
    if wait -n -p pid; then :; else
        echo "bench_gpu.sh: ${job_name[$pid]} failed, see $OUT/${job_name[$pid]}.log" >&2
        failed=1
    fi
    unset "job_name[$pid]"
}

for family in $FAMILIES; do
    for precision in $PRECISIONS; do
        for layout in $LAYOUTS; do
            while (( ${#job_name[@]} >= JOBS )); do reap; done
            name=$family-$precision-$layout
            # shellcheck disable=SC2046,SC2086  # word splitting of the lists is meant
            TORCHINDUCTOR_COMPILE_THREADS=$COMPILE_THREADS "$PY" scripts/bench_train.py \
                --device "$DEVICE" --family "$family" --precision "$precision" \
                --channels-last "$layout" --compile $MODES --lock "$OUT/timing.lock" \
                $(steps_for "$family") $EXTRA > "$OUT/$name.jsonl" 2> "$OUT/$name.log" &
            job_name[$!]=$name
        done
    done
done
while (( ${#job_name[@]} > 0 )); do reap; done
rm -f "$OUT/timing.lock"

if compgen -G "$OUT/*.jsonl" > /dev/null && [[ -n $(cat "$OUT"/*.jsonl) ]]; then
    "$PY" scripts/bench_train.py --table "$OUT"/*.jsonl > "$OUT/table.md"
    cat "$OUT/table.md"
fi
exit "$failed"
