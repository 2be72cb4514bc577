#!/usr/bin/env bash
# jaxae's benchmarks on one NVIDIA H100/H200, offline, in about 7 minutes.
#
#   OUT=/tmp/out scripts/gpu_bench.sh        # from the repository root
#
# 1. nvidia-smi; 2. a brief correctness check on the GPU (fit falls, encode matches
# a NumPy reference within TF32 tolerance); 3. the training loop at batch 100
# under four XLA_FLAGS variants, one process each; 4. `jaxae bench` at full size, its
# clustering section included (UMAP + GMM: the JAX backends beside umap-learn + scikit-learn,
# and ClustPy's N2D where it is installed, on the same codes).
# For umap-learn's row carry its wheels (the device image has numba and llvmlite), as
# scripts/gpu_clustering.sh does:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
#       umap-learn pynndescent
# then run with carry [".whl"] (and ".data" for the digits); without them the row is skipped.
# Writes $OUT/{log.txt,nvidia-smi.txt,check.txt,variants.txt,bench.json,bench.md,bench.png}.
# Environment: JAXAE_BENCH_DATA (default .data/mnist-5k, else the MNIST cache or digits),
# PYTHON (default python3), BUDGET (seconds for the whole script, default 420),
# BENCH_ARGS (extra `jaxae bench` flags, e.g. --quick for a dry run), VARIANT_EPOCHS (200).
# Exit status: 1 if the correctness check failed, else `jaxae bench`'s.
set -uo pipefail
OUT=${OUT:-out/gpu-bench}
PY=${PYTHON:-python3}
BUDGET=${BUDGET:-420}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
export JAXAE_BENCH_DATA=${JAXAE_BENCH_DATA:-.data/mnist-5k}
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # the torch peers share the GPU
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
step() { echo; echo "=== [${SECONDS} s] $*"; }

step "GPU"
nvidia-smi 2>&1 | tee "$OUT/nvidia-smi.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv \
    >>"$OUT/nvidia-smi.txt" 2>&1

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
$PY -c 'import jax, jaxlib, jaxae; print("jax", jax.__version__, "jaxlib", jaxlib.__version__,
        "jaxae", jaxae.__version__, jax.devices())'
ls "$JAXAE_BENCH_DATA" 2>/dev/null || echo "no $JAXAE_BENCH_DATA: the MNIST cache or digits"

step "correctness"
$PY - <<'EOF' 2>&1 | tee "$OUT/check.txt"
import sys
import jax
import numpy as np
import os
from jaxae.bench.data import load_images
from jaxae.config import ModelConfig, TrainConfig
from jaxae.encoder import Encoder
from jaxae.train import fit

backend = jax.default_backend()
images, source = load_images(os.environ['JAXAE_BENCH_DATA'] if os.path.exists(os.environ['JAXAE_BENCH_DATA']) else None, 3000)
result = fit(images, model_config=ModelConfig(), train_config=TrainConfig(epochs=2), progress=False)
loss = np.asarray(result.loss_history)
fit_ok = bool(np.isfinite(loss).all() and loss[1] < loss[0])
print(f"backend {backend}; data {source}")
print(f"fit, 2 epochs: losses {loss}, compile {result.compile_seconds:.2f} s: "
      f"{'ok' if fit_ok else 'FAILED'}")

x = images[:1000]
codes = Encoder(result.state.params, ModelConfig()).encode(x)
p = jax.tree.map(lambda a: np.asarray(a, np.float64), jax.device_get(result.state.params))["params"]
z = x.astype(np.float64)
z = (z - z.mean(1, keepdims=True)) / z.std(1, keepdims=True)
h = np.maximum(z @ p["encoder_hidden"]["kernel"] + p["encoder_hidden"]["bias"], 0)
ref = np.maximum(h @ p["encoder_code"]["kernel"] + p["encoder_code"]["bias"], 0)
err, scale = float(np.abs(codes - ref).max()), float(np.abs(ref).max())
# TF32 keeps 10 mantissa bits (relative 5e-4 per product); two layers of sums stay well in 1%.
enc_ok = codes.shape == ref.shape and err <= 1e-2 * scale
print(f"encode 1,000 rows vs NumPy float64: max error {err:.3g} of max |code| {scale:.3g}: "
      f"{'ok' if enc_ok else 'FAILED'}")
sys.exit(0 if fit_ok and enc_ok and backend == "gpu" else 1)
EOF
check=$?
[ "$check" = 0 ] && echo "correctness: ok" || echo "correctness: FAILED (the benchmarks run anyway)"

step "training-loop variants: the original recipe, fit, ${VARIANT_EPOCHS:=200} epochs, one process each"
VARIANT='
import json, os
import os
from jaxae.bench.data import load_images
from jaxae.config import ModelConfig, TrainConfig
from jaxae.train import fit
images, _ = load_images(os.environ['JAXAE_BENCH_DATA'] if os.path.exists(os.environ['JAXAE_BENCH_DATA']) else None, 3000)
run = lambda: fit(images, model_config=ModelConfig(), train_config=TrainConfig(epochs=int(os.environ["VARIANT_EPOCHS"])),
                  progress=False)
first = run()  # compiles; the second call reuses the program
r = run()
print(json.dumps(dict(us_per_step=1e6 * r.train_seconds / r.steps, steps=r.steps,
                      compile_s=first.compile_seconds, final_loss=float(r.loss_history[-1]))))
'
CB=--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,WHILE,CONDITIONAL
: >"$OUT/variants.txt"
for v in "a|" "b|$CB" "d|$CB --xla_gpu_graph_min_graph_size=1"; do
    name=${v%%|*} flags=${v#*|}
    if res=$(XLA_FLAGS="$flags" VARIANT_EPOCHS=$VARIANT_EPOCHS timeout 90 $PY -c "$VARIANT" 2>"$OUT/variant.err"); then
        line="$name: $(echo "$res" | tail -1)"
    else
        line="$name: failed ($(tail -1 "$OUT/variant.err"))"
    fi
    echo "$line  XLA_FLAGS='$flags'" | tee -a "$OUT/variants.txt"
done
rm -f "$OUT/variant.err"

step "many models in one program: K = 1, 8, 64 at batch 100, 3,000 images, 30 epochs"
$PY - <<'EOF' 2>&1 | tee -a "$OUT/variants.txt"
import os
from jaxae.bench.data import load_images
from jaxae.config import ModelConfig, TrainConfig
from jaxae.train import fit
images, _ = load_images(os.environ['JAXAE_BENCH_DATA'] if os.path.exists(os.environ['JAXAE_BENCH_DATA']) else None, 3000)
base = None
for k, vectorize in ((1, None), (8, None), (64, None), (8, False)):
    run = lambda: fit(images, model_config=ModelConfig(), train_config=TrainConfig(epochs=int(os.environ.get("MODEL_EPOCHS", 30))),
                      seeds=range(k), progress=False, vectorize_models=vectorize)
    first = run()
    r = run()
    us = 1e6 * r.train_seconds / r.steps
    base = base or us
    how = "" if vectorize is None else " one after another (lax.map)"
    print(f"models K={k}{how}: {us:.1f} us/step for all, {us / k:.2f} us per model-step, "
          f"{us / base:.2f}x one model; compile {first.compile_seconds:.2f} s")
EOF

step "jaxae bench: training, encoding, compilation, clustering"
$PY -c 'import umap; print("umap-learn", umap.__version__)' 2>/dev/null ||
    echo "umap-learn is missing: the clustering section times the JAX backends alone (carry .whl)"
if $PY -m jaxae.cli bench --help >/dev/null 2>&1; then BENCH=($PY -m jaxae.cli bench); else
    BENCH=($PY -m jaxae.bench); fi
left=$((BUDGET - SECONDS))
limit=$((left - 45 > 60 ? left - 45 : 60))  # stop starting measurements; the last may take ~30 s
# shellcheck disable=SC2086
DATA=(); [ -e "$JAXAE_BENCH_DATA" ] && DATA=(--data "$JAXAE_BENCH_DATA")
timeout $((left > limit + 30 ? left : limit + 30)) "${BENCH[@]}" --out "$OUT" "${DATA[@]}" --time-limit "$limit" \
    ${BENCH_ARGS:-}
status=$?
step "done: correctness $check, bench $status"
cat "$OUT/variants.txt"
[ -f "$OUT/bench.md" ] && sed -n '1,/^## Metadata/p' "$OUT/bench.md"
[ "$check" = 0 ] || exit 1
exit $status
