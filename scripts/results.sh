#!/usr/bin/env bash
# The runs behind results/ and docs/results.md, exactly as they were made (on the project's
# 2-core CPU machine; docs/results.md says when and how long each took). Each command
# refuses to write into a directory that already holds a run: move results/ aside first.
#
#   bash scripts/results.sh [RUN ...]    RUN: digits, mnist, mnist_searched, search, table4,
#                                        report (default: all but mnist, whose recipe is gone,
#                                        and table4, which a lent GPU ran)
#
# MNIST is read from ../shared/data (the real files, never copied into the repo); point
# MNIST_ROOT elsewhere if yours live elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
RCNNEXP=${RCNNEXP:-.venv/bin/rcnnexp}
MNIST_ROOT=${MNIST_ROOT:-../shared/data}

digits() {  # the default run (`make train`) on ten seeds, all at once as processes of their own
            # (submitit's local launcher), one thread each. Made 2026-12-02 04:14-04:17 UTC
            # into /tmp/seeds, then copied here
    OMP_NUM_THREADS=1 "$RCNNEXP" train -m trainer.seed=0,1,2,3,4,5,6,7,8,9 \
        trainer.progress=false hydra/launcher=submitit_local hydra.launcher.timeout_min=30 \
        hydra.sweep.dir=results/digits-default
}

mnist() {  # RCNN Table 4, RCNN-32, shortened to fit a CPU: stage 1 only (no retraining on
           # all 60,000 images), at most 20 epochs, the rate cut after 2 epochs without a
           # better validation top-1 instead of 10. One process, one thread, one core. Under
           # the recipe of 2026-12-01 this gave 1.36 % (commit 095b164); the recipe has
           # since been searched, and mnist_searched is the same run under it
    OMP_NUM_THREADS=1 "$RCNNEXP" train experiment=rcnn/t4_rcnn32 \
        dataset.root="$MNIST_ROOT" dataset.download=false \
        trainer.retrain=false trainer.epochs=20 schedule.patience=2 trainer.progress=false \
        hydra.run.dir=results/rcnn-t4-rcnn32-seed0
}

mnist_searched() {  # the same shortening as `mnist`, under the recipe the search chose (conf/recipe/
                   # rcnn_mnist.yaml): the before and after of docs/models.md. Two threads.
    OMP_NUM_THREADS=2 "$RCNNEXP" train experiment=rcnn/t4_rcnn32 \
        dataset.root="$MNIST_ROOT" dataset.download=false \
        trainer.retrain=false trainer.epochs=20 schedule.patience=2 trainer.progress=false \
        hydra.run.dir=results/rcnn-t4-rcnn32-searched-seed0
}

search() {  # the search that chose the rcnn_mnist recipe's unstated values (conf/search):
            # 24 trials, two side by side, one thread each. Made 2026-12-02 02:51-03:26 UTC
            # (commit 788313b) into outputs/search/rcnn_mnist, then copied here
    OMP_NUM_THREADS=1 "$RCNNEXP" train -m experiment=rcnn/t4_rcnn32 search=rcnn_mnist \
        dataset.root="$MNIST_ROOT" dataset.download=false \
        hydra.sweep.dir=results/search-rcnn-mnist
    "$RCNNEXP" report results/search-rcnn-mnist out=docs/search-rcnn-mnist.md
}

table4() {  # RCNN Table 4, RCNN-32, at the paper's whole protocol: both stages, nothing
            # shortened, in fp32 without TF32, seeds 0, 1 and 2 side by side on one lent GPU,
            # by `bash scripts/gpu_check.sh --only table4 --budget 540` and then, until its
            # summary says every seed is done, the same with `--resume-from gpu-table4` (the
            # files the call before returned, copied there; docs/performance.md, "On a GPU").
            # This step unpacks the finished runs (from $GPU_TABLE4, default gpu-table4/) into
            # results/rcnn-t4-rcnn32-seed{0,1,2} and writes the report anew (move
            # docs/results.md and docs/results/ aside first: a report never overwrites)
    local from=${GPU_TABLE4:-gpu-table4} seed archive
    if [ -e docs/results.md ] || [ -e docs/results ]; then
        echo "error: docs/results.md or docs/results/ exists; move them aside, the report is" \
             "written anew" >&2
        exit 2
    fi
    for seed in 0 1 2; do
        archive="$from/table4-seed-$seed.tar.gz"
        if [ ! -f "$archive" ]; then
            echo "error: no $archive; GPU_TABLE4 names the folder a table4 call returned" >&2
            exit 2
        elif ! tar -xzOf "$archive" "seed-$seed/results.json" > /dev/null 2>&1; then
            echo "error: seed $seed's run in $archive is not finished (no results.json);" \
                 "continue it with gpu_check.sh --only table4 --resume-from $from" >&2
            exit 2
        elif [ -e "results/rcnn-t4-rcnn32-seed$seed" ]; then
            echo "error: results/rcnn-t4-rcnn32-seed$seed already exists; move it aside" >&2
            exit 2
        fi
    done
    for seed in 0 1 2; do
        mkdir -p "results/rcnn-t4-rcnn32-seed$seed"
        tar -xzf "$from/table4-seed-$seed.tar.gz" -C "results/rcnn-t4-rcnn32-seed$seed" \
            --strip-components=1
    done
    report
}

report() {
    "$RCNNEXP" report results out=docs/results.md
}

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(digits search mnist_searched report)
for step in "${steps[@]}"; do
    case "$step" in
        digits|mnist|mnist_searched|search|table4|report) "$step" ;;
        *) echo "error: unknown run '$step'; the runs are digits, mnist, mnist_searched, search," \
                "table4, report" >&2; exit 2 ;;
    esac
done
