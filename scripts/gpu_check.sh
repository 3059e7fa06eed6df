#!/usr/bin/env bash
# First contact with a GPU: a lent one (one H200, 15 minutes a session, start included) or a
# user's new box. At most 8 minutes on one GPU by default, in stages ordered by how much
# they decide: env (versions, device, hydra), smoke (each CUDA path alone), paths (the tests
# of one path each, by id), gpu_tests (pytest -m gpu), bench_eager and bench_graphs (images/s
# per family, eager and CUDA graphs, bf16), mnist (RCNN Table 4 on real MNIST, 2 epochs);
# only when named: grid (scripts/bench_gpu.sh, 15-25 min) and table4 (RCNN Table 4's RCNN-32
# row at the paper's whole protocol, seeds side by side, stopped at the budget with every run
# saved and packed, continued by --resume-from). Each stage is capped by what is left of the
# budget and skipped when too little is; its log (OUT/<stage>.log) and a line of
# OUT/summary.txt are written as it goes. Exit 1 when a stage failed, 2 for bad arguments.
#
#   bash scripts/gpu_check.sh [--out DIR] [--budget 480] [--only env,smoke] [--wheels DIR]
#                             [--mnist DIR] [--seeds 0,1,2] [--extra KEY=VALUE ...]
#                             [--resume-from DIR]
#   bash scripts/gpu_check.sh --help       # the stages, their caps, what each needs, and
#                                          # table4's calls on a lent GPU
#
# The interpreter is $PYTHON, else python3: the one whose torch is already installed (a GPU
# image's), never .venv's. rcnnexp is taken from this checkout (PYTHONPATH); where hydra is
# not importable the wheels in --wheels (default gpu-wheels/ here) are unpacked onto
# PYTHONPATH. The output folder: --out, else $OUT, else outputs/gpu-check/UTC-DATE-TIME.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! command -v "$PY" > /dev/null; then
    echo "gpu_check.sh: no Python at PYTHON=$PY; name one whose torch is installed" >&2
    exit 2
fi
exec "$PY" scripts/gpu_check.py "$@"
