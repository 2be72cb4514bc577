#!/usr/bin/env bash
# Does the kind of input change the result? The same 2,000 mnist-5k digits as uint8, float32
# in [0, 1] and in [-1, 1], each through `jaxae run --preset n2d-fast --epochs 20`; the ACC of
# the three should agree. Its result is in docs/input-data.md and bench/results/scaling-inputs.md.
# Usage: bash bench/studies/scaling_check.sh OUT_DIR   (about 3 minutes per kind on 2 cores)
# The "before" lines of bench/results/scaling-inputs.md ran the same commands from a worktree
# at c1b0134 (git worktree add OLD c1b0134; PYTHONPATH=OLD python -m jaxae.cli run ...).
set -euo pipefail
out=${1:?usage: scaling_check.sh OUT_DIR}
data=${MNIST_5K:-$(dirname "$0")/../../../shared/data/mnist-5k}
mkdir -p "$out"
python - "$data" "$out" <<'PY'
import sys
import numpy as np
from jaxae.data import load_dataset
ds = load_dataset(sys.argv[1], n=2000)
x, out = ds.images, sys.argv[2]
np.savez(f"{out}/u8.npz", x=x.astype(np.uint8), y=ds.labels)
np.savez(f"{out}/f01.npz", x=(x / 255.0).astype(np.float32), y=ds.labels)
np.savez(f"{out}/fm1.npz", x=(x / 127.5 - 1.0).astype(np.float32), y=ds.labels)
PY
for kind in u8 f01 fm1; do
  python -m jaxae.cli run --dataset "$out/$kind.npz" --n 2000 --preset n2d-fast --epochs 20 \
    --no-progress --out "$out/run-$kind" --force | tee "$out/$kind.log"
done
