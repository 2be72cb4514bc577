"""What augmentation (jaxae.augment) adds to a step of DEC's pretraining (at most 15%).

One benchmark: bench/ab_augment.py's measurement (the d-500-500-2000-10 step at batch
256, plain and on an augmented batch, and the augmentation alone, timed in alternation
round after round), on the session's digits scaled to [0, 1]. The benchmark's own time
columns are the whole measurement (compilation included): read extra_info, which holds
per variant ``seconds_per_step`` (median), ``compile_seconds`` and ``ratio_vs_plain``
with ``ratio_min``/``ratio_max`` over the rounds, in wall and process CPU time.

  pytest bench/test_bench_augment.py --benchmark-json=augment.json
"""

from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np
from ab_augment import measure, ratios  # bench/ is on sys.path: pytest puts it there

QUICK = os.environ.get("JAXAE_BENCH_QUICK") == "1"
VARIANTS = ["plain", "augment", "augment-only"]


def mnist_shaped(images: np.ndarray) -> np.ndarray:
    """``(n, 784)`` pixels in [0, 255]: MNIST's as they are; scikit-learn's 8 x 8 digits
    (0 to 16, where ../shared/data is missing) blown up 3x and framed by 2 pixels, so
    the measured step is the 28 x 28 one either way."""
    if images.shape[1] == 784:
        return images
    digits = np.asarray(images, np.float32).reshape(-1, 8, 8) * (255.0 / 16.0)
    big = np.kron(digits, np.ones((1, 3, 3), np.float32))
    return np.pad(big, ((0, 0), (2, 2), (2, 2))).reshape(-1, 784)


def test_augment_cost(benchmark, record, images):
    rounds, steps = (2, 2) if QUICK else (9, 20)
    x = jnp.asarray(mnist_shaped(images[:10_000]), jnp.float32) / 255.0
    times = benchmark.pedantic(
        measure,
        args=(x, VARIANTS),
        kwargs=dict(rounds=rounds, steps=steps, log=lambda _: None),
        rounds=1,
        iterations=1,
    )
    rows = {}
    for name in VARIANTS:
        rows[name] = dict(
            seconds_per_step=float(np.median(times[name]["wall"])) / steps,
            compile_seconds=times[name]["compile_seconds"],
        )
        for kind in ("wall", "cpu"):
            med, lo, hi = ratios(times, name, kind)
            rows[name][f"{kind}_ratio_vs_plain"] = med
            rows[name][f"{kind}_ratio_min"], rows[name][f"{kind}_ratio_max"] = lo, hi
    record(rows=rows, rounds=rounds, steps=steps, batch=256, load=times["load"])
    assert all(np.isfinite(v) for row in rows.values() for v in row.values())
