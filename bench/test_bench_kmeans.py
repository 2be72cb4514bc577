"""kmeans_jax against scikit-learn's KMeans on 100-feature clustered codes (K=10, 3 inits).

Both fits per size share a benchmark group, so pytest-benchmark prints them side
by side; the JAX test also records the speed and inertia ratios to the baseline
measured earlier in the same run.

  pytest bench/test_bench_kmeans.py                     # N = 70,000 and 1,000,000
  pytest bench/test_bench_kmeans.py -k 70000            # one size
  JAXAE_BENCH_QUICK=1 pytest bench/test_bench_kmeans.py --benchmark-disable   # CI: N = 2,000
  JAXAE_BENCH_MAX_ITER=50 pytest bench/test_bench_kmeans.py                   # bound CPU time
"""

from __future__ import annotations

import functools
import os
import time

import jax
import numpy as np
import pytest
import sklearn
from conftest import mean_seconds  # bench/ is on sys.path: pytest puts it there
from sklearn.cluster import KMeans

from jaxae.cluster import kmeans_jax

QUICK = os.environ.get("JAXAE_BENCH_QUICK") == "1"
SIZES = [2_000] if QUICK else [70_000, 1_000_000]
MAX_ITER = int(os.environ.get("JAXAE_BENCH_MAX_ITER", "300"))
FEATURES, CLUSTERS, N_INIT = 100, 10, 3
# The acceptance criterion: inertia within 1% of scikit-learn's.
INERTIA_RTOL = 0.01

_BASELINE: dict[int, dict[str, float | None]] = {}  # N -> scikit-learn's seconds and inertia


def sizes() -> list:
    return [
        pytest.param(n, id=f"N={n}", marks=pytest.mark.benchmark(group=f"kmeans-{n}"))
        for n in SIZES
    ]


@functools.cache
def codes(n: int) -> np.ndarray:
    """(n, 100) float32: 10 Gaussian clusters of unequal sizes and spreads that overlap."""
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=1.0, size=(CLUSTERS, FEATURES)).astype(np.float32)
    spread = rng.uniform(0.5, 1.5, size=CLUSTERS).astype(np.float32)
    labels = rng.choice(CLUSTERS, size=n, p=rng.dirichlet(np.full(CLUSTERS, 5.0)))
    noise = rng.standard_normal((n, FEATURES), dtype=np.float32)
    return centers[labels] + spread[labels, None] * noise


def record_common(benchmark, n: int) -> None:
    benchmark.extra_info.update(
        n=n,
        features=FEATURES,
        clusters=CLUSTERS,
        n_init=N_INIT,
        max_iter=MAX_ITER,
        dtype="float32",
        jax=jax.__version__,
        sklearn=sklearn.__version__,
        cpu_count=os.cpu_count(),
    )


@pytest.mark.parametrize("n", sizes())
def test_sklearn_kmeans(benchmark, n):
    """The baseline: scikit-learn's Lloyd with its default threads, on host float32."""
    x = codes(n)

    def fit():
        model = KMeans(
            n_clusters=CLUSTERS, n_init=N_INIT, max_iter=MAX_ITER, random_state=0, algorithm="lloyd"
        )
        return model.fit(x)

    model = benchmark.pedantic(fit, rounds=3, iterations=1, warmup_rounds=1)
    _BASELINE[n] = {"seconds": mean_seconds(benchmark), "inertia": float(model.inertia_)}
    record_common(benchmark, n)
    benchmark.extra_info.update(backend="sklearn-cpu", inertia=float(model.inertia_))


@pytest.mark.parametrize("n", sizes())
def test_kmeans_jax(benchmark, n):
    """kmeans_jax on data already on the device (as codes are after encoding)."""
    x = jax.device_put(codes(n))
    fit = functools.partial(kmeans_jax, x, clusters=CLUSTERS, n_init=N_INIT, max_iter=MAX_ITER)
    # Timed apart: the first call compiles. kmeans_jax returns host arrays, so
    # each call has finished on the device when it returns.
    start = time.perf_counter()
    fit()
    first_call = time.perf_counter() - start

    result = benchmark.pedantic(fit, rounds=3, iterations=1, warmup_rounds=1)
    seconds = mean_seconds(benchmark)
    record_common(benchmark, n)
    device = jax.devices()[0]
    benchmark.extra_info.update(
        backend=jax.default_backend(),
        device_kind=device.device_kind,
        first_call_s=first_call,  # compile + one fit
        inertia=result.inertia,
        n_iter=result.n_iter,
    )
    baseline = _BASELINE.get(n)
    if baseline is None:  # the baseline was deselected (e.g. -k kmeans_jax)
        return
    benchmark.extra_info.update(
        sklearn_inertia=baseline["inertia"],
        inertia_ratio=result.inertia / baseline["inertia"],
    )
    if seconds is not None and baseline["seconds"] is not None:
        benchmark.extra_info["speedup_vs_sklearn"] = baseline["seconds"] / seconds
    assert result.inertia <= baseline["inertia"] * (1 + INERTIA_RTOL)
