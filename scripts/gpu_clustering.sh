#!/usr/bin/env bash
# Issue 11's GPU targets on one NVIDIA H100/H200, offline: the best preset (n2d-fast) and
# idec on all 70,000 MNIST digits, five seeds in one run each, timed end to end.
#
#   OUT=/tmp/out scripts/gpu_clustering.sh        # from the repository root
#
# Carry the digits and two small wheels the device image lacks (it has numba and llvmlite):
#   mkdir -p .data && cp -r ../shared/data/mnist .data/
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
#       umap-learn pynndescent
# then run with carry [".data", ".whl"]. Each run stops at its own time limit and the script
# at BUDGET seconds; a run that is cut short says so in the log.
# Environment: DATA (default .data/mnist), PRESETS (default "n2d-fast idec"), SEEDS (5),
# BUDGET (seconds for the whole script, default 540), PYTHON (python3), RUN_ARGS (extra
# `jaxae run` flags, e.g. "--n 2000 --epochs 2" for a dry run on a CPU).
# Writes $OUT/{log.txt,nvidia-smi.txt,<preset>/ (the run folder), <preset>.time}.
set -uo pipefail
OUT=${OUT:-out/gpu-clustering}
PY=${PYTHON:-python3}
BUDGET=${BUDGET:-540}
DATA=${DATA:-.data/mnist}
SEEDS=${SEEDS:-5}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1
step() { echo; echo "=== [${SECONDS} s] $*"; }

step "GPU"
nvidia-smi 2>&1 | tee "$OUT/nvidia-smi.txt" || echo "no nvidia-smi: not a GPU machine"

step "install (offline)"
if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
if ! $PY -c 'import importlib.metadata as m; m.version("jaxae")' 2>/dev/null &&
   ! $PY -m pip install --quiet --no-deps --no-build-isolation -e . ; then
    echo "pip install -e . failed: using PYTHONPATH=$PWD"
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
[ -e "$DATA" ] || { echo "no $DATA: carry .data (see the header)"; exit 2; }
$PY -c 'import jax, jaxae, umap; print("jax", jax.__version__, "jaxae", jaxae.__version__,
        "umap-learn", umap.__version__, jax.devices())' || {
    echo "umap-learn is missing: carry .whl with umap-learn and pynndescent (see the header)"
    exit 2
}

status=0
for preset in ${PRESETS:-n2d-fast idec}; do
    left=$((BUDGET - SECONDS - 10))
    if [ "$left" -lt 30 ]; then echo "$preset: skipped, ${left} s left of BUDGET"; continue; fi
    step "jaxae run --preset $preset --seeds $SEEDS on $DATA (at most $left s)"
    # shellcheck disable=SC2086
    /usr/bin/time -f "%e s wall, %M KB max RSS" -o "$OUT/$preset.time" \
        timeout "$left" $PY -m jaxae.cli run --dataset "$DATA" --n all --preset "$preset" \
        --seeds "$SEEDS" --out "$OUT/$preset" --force --no-progress ${RUN_ARGS:-}
    rc=$?
    [ "$rc" = 124 ] && echo "$preset: cut short at $left s"
    [ "$rc" = 0 ] || status=$rc
    echo "$preset: exit $rc, $(cat "$OUT/$preset.time" 2>/dev/null)"
done
step "done"
exit $status
