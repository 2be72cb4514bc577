"""N2D's clustering stage, UMAP then a full Gaussian mixture, both ways on the same codes.

The pieces of ``jaxae bench --sections clustering`` (``jaxae.bench.clustering``: its
codes, its calls, its options) under pytest-benchmark. The reference is umap-learn
(seeded, so one thread, as jaxae runs it) then scikit-learn's ``GaussianMixture``;
against it, the JAX backends (``fit_umap_gmm(backend="jax", gmm_backend="jax")``), and
ClustPy's N2D where it is installed. The codes are PCA-10 of real digits (pixels / 255,
scikit-learn's PCA with ``random_state=0``), a stand-in for a 10-dimensional
autoencoder code, so all see the same input. They share a benchmark group; the JAX
test records its speed-up and all record their accuracy against the labels, for the
table, never for a choice. One seed's accuracy on PCA codes swings by several points
(mnist-5k, seeds 0-3: umap-learn 0.65-0.72, JAX 0.61-0.70), so nothing is asserted on
it here; the backends' quality is compared on autoencoder codes over five models by
``bench/studies/backends_same_codes.py``.

  pytest bench/test_bench_clustering.py                  # N = 5,000 of $JAXAE_BENCH_DATA
  JAXAE_BENCH_QUICK=1 pytest bench/test_bench_clustering.py --benchmark-disable   # CI: 600
  JAXAE_BENCH_DATA=../shared/data/mnist JAXAE_BENCH_CLUSTER_N=10000 \
      pytest bench/test_bench_clustering.py
"""

from __future__ import annotations

import functools
import os
import time
import warnings

import jax
import numpy as np
import pytest
from conftest import QUICK, data_source, mean_seconds  # bench/ is on sys.path: pytest puts it there

from jaxae.bench import clustering
from jaxae.bench.data import load_labelled
from jaxae.cluster.scores import cluster_accuracy

N = 600 if QUICK else int(os.environ.get("JAXAE_BENCH_CLUSTER_N", "5000"))

_REFERENCE: dict[str, float | None] = {}  # seconds and accuracy of umap-learn + scikit-learn


@functools.cache
def codes() -> tuple[np.ndarray, np.ndarray, str]:
    """(N, 10) float32 codes, their labels, and where the digits came from."""
    images, labels, where = load_labelled(data_source() or "digits", N)
    return clustering.make_codes(images), labels, where


def fit(name: str) -> np.ndarray:
    return clustering.fit_stage(codes()[0], name)


def measure(benchmark, record, name: str, label: str) -> float:
    """The stage's first call (compilation: numba's or XLA's) timed apart, then two
    timed rounds, recorded under ``label``; returns the accuracy (checked above chance)."""
    start = time.perf_counter()
    fit(name)
    first = time.perf_counter() - start
    found = benchmark.pedantic(fit, args=(name,), rounds=2, iterations=1)
    x, labels, source = codes()
    acc = cluster_accuracy(labels, found)
    assert acc > 0.3  # ten digits: 0.1 by chance; broken labels would show
    record(n=len(x), data=source, backend=label, first_call_s=first, acc=acc)
    return acc


GROUP = pytest.mark.benchmark(group=f"umap-gmm-{N}")


@GROUP
def test_umap_learn_and_sklearn(benchmark, record):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pytest.importorskip("umap")
    acc = measure(benchmark, record, clustering.REFERENCE, "umap-learn+sklearn")
    _REFERENCE.update(seconds=mean_seconds(benchmark), acc=acc)


@GROUP
def test_jax_umap_and_gmm(benchmark, record):
    measure(benchmark, record, clustering.JAX, f"jax-{jax.default_backend()}")
    seconds = mean_seconds(benchmark)
    if "acc" not in _REFERENCE:  # umap-learn missing or deselected
        return
    record(reference_acc=_REFERENCE["acc"])
    if seconds is not None and _REFERENCE["seconds"] is not None:
        record(speedup_vs_umap_learn=_REFERENCE["seconds"] / seconds)


@GROUP
def test_clustpy_n2d(benchmark, record):
    reason = clustering.available(["clustpy"])[clustering.CLUSTPY]
    if reason is not None:
        pytest.skip(reason)
    measure(benchmark, record, clustering.CLUSTPY, "clustpy-n2d")
