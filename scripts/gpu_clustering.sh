#!/usr/bin/env bash
# The deep-clustering presets' GPU targets on one NVIDIA H100/H200, offline, on all 70,000
# images of both yardsticks (MNIST, then Fashion-MNIST), five seeds in one run each, timed
# end to end:
#   n2d-fast-jax  n2d-fast with UMAP and the mixture on the device (under 60 s end to
#                 end, the UMAP + mixture stage of one model under 2 s: see
#                 stage_seconds in its report.json);
#   n2d-da        the best preset: 500 epochs of augmented pretraining, UMAP + GMM, then
#                 IDEC-DA from those clusters with the refinement guard (MNIST: mean ACC
#                 >= 0.985, five seeds; Fashion-MNIST: >= 0.68, and no seed below its start);
#   dec-da        DEC with augmentation (within a point of the published 0.985);
#   n2d-fast      the umap-learn reference;
#   idec          IDEC as published, for comparison.
#
#   OUT=/tmp/out scripts/gpu_clustering.sh        # from the repository root
#
# Carry the images (and, for the umap-learn runs, two small wheels the device image lacks;
# it has numba and llvmlite):
#   mkdir -p .data && cp -r ../shared/data/mnist ../shared/data/fashion-mnist .data/
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
#       umap-learn pynndescent
# then run with carry [".data", ".whl"]. Each run stops at its own time limit and the script
# at BUDGET seconds; a run that is cut short says so in the log.
# Environment: DATASETS (default ".data/mnist .data/fashion-mnist"; each is a folder of IDX
# files, train then t10k), RUNS (default "n2d-fast-jax n2d-da dec-da n2d-fast idec",
# names from the table below), SEEDS (5), BUDGET (seconds for the whole script, default 540),
# PYTHON (python3), RUN_ARGS (extra `jaxae run` flags for every run, e.g. "--n 2000
# --epochs 2" for a dry run on a CPU; a method's own flag, such as --max-steps, is refused
# by the runs whose method does not read it).
# Writes $OUT/{log.txt,nvidia-smi.txt,<data>-<run>/ (the run folder), <data>-<run>.time}.
set -uo pipefail
OUT=${OUT:-out/gpu-clustering}
PY=${PYTHON:-python3}
BUDGET=${BUDGET:-540}
DATASETS=${DATASETS:-.data/mnist .data/fashion-mnist}
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
for data in $DATASETS; do
    [ -e "$data" ] || { echo "no $data: carry .data (see the header)"; exit 2; }
done
$PY -c 'import jax, jaxae; print("jax", jax.__version__, "jaxae", jaxae.__version__, jax.devices())'
has_umap=1
$PY -c 'import umap; print("umap-learn", umap.__version__)' 2>/dev/null || {
    has_umap=0
    echo "umap-learn is missing: the umap-learn runs are skipped (carry .whl, see the header)"
}

# Run name -> preset and flags.
declare -A PRESET=([n2d-fast-jax]=n2d-fast [n2d-da]=n2d-da [dec-da]=dec-da [n2d-fast]=n2d-fast [idec]=idec)
# DEC-DA's update interval on all 70,000 digits is 140 (their MNIST setting), not the 30 of
# the 10,000 test digits that n2d-da carries.
declare -A FLAGS=([n2d-fast-jax]="--umap jax --gmm jax" [n2d-da]="--update-interval 140" [dec-da]="" [n2d-fast]="--umap umap-learn --gmm sklearn" [idec]="")
declare -A NEEDS_UMAP=([n2d-fast]=1)

status=0
for data in $DATASETS; do
for name in ${RUNS:-n2d-fast-jax n2d-da dec-da n2d-fast idec}; do
    preset=${PRESET[$name]:-}
    if [ -z "$preset" ]; then echo "unknown run $name: use ${!PRESET[*]}"; status=2; continue; fi
    if [ "${NEEDS_UMAP[$name]:-0}" = 1 ] && [ "$has_umap" = 0 ]; then
        echo "$name: skipped, no umap-learn"; continue
    fi
    run=$(basename "$data")-$name
    left=$((BUDGET - SECONDS - 10))
    if [ "$left" -lt 30 ]; then echo "$run: skipped, ${left} s left of BUDGET"; continue; fi
    step "$run: jaxae run --preset $preset ${FLAGS[$name]} --seeds $SEEDS on $data (at most $left s)"
    # shellcheck disable=SC2086
    /usr/bin/time -f "%e s wall, %M KB max RSS" -o "$OUT/$run.time" \
        timeout "$left" $PY -m jaxae.cli run --dataset "$data" --n all --preset "$preset" \
        ${FLAGS[$name]} --seeds "$SEEDS" --out "$OUT/$run" --force --no-progress ${RUN_ARGS:-}
    rc=$?
    [ "$rc" = 124 ] && echo "$run: cut short at $left s"
    [ "$rc" = 0 ] || status=$rc
    echo "$run: exit $rc, $(cat "$OUT/$run.time" 2>/dev/null)"
    [ -f "$OUT/$run/report.json" ] && $PY -c "import json, sys; r = json.load(open(sys.argv[1]))
print('stage seconds', {k: round(v, 2) for k, v in r['stage_seconds'].items()})
print({k: (round(v['acc'], 4), round(v.get('std', {}).get('acc', 0.0), 4)) for k, v in r['metrics'].items()})
print('guard', [m.get('guard') for m in r['models']])
print('consensus', r['consensus']['model'], r['consensus']['agreement'])" \
        "$OUT/$run/report.json"
done
done
step "done"
exit $status
