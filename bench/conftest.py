"""Fixtures for the benchmarks in bench/, which the plain test run never collects.

  pytest bench                                           # this backend's full sizes
  JAXAE_BENCH_QUICK=1 pytest bench --benchmark-disable   # CI: each once, small sizes
  pytest bench --benchmark-json=out.json                 # extra_info: metadata, ratios

The digits come from $JAXAE_BENCH_DATA (default ../shared/data/mnist-5k), tiled
to the sizes needed; random pixels where that folder is missing.
"""

from __future__ import annotations

import dataclasses
import functools
import os

# JAX would take 75% of a GPU's memory at its first use, leaving the torch peers too little.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import numpy as np
import pytest

from jaxae import bench

QUICK = os.environ.get("JAXAE_BENCH_QUICK") == "1"
SIZES = bench.sizes_for("quick" if QUICK else "full")


@pytest.fixture(scope="session")
def sizes() -> bench.Sizes:
    return SIZES


@functools.cache
def _images() -> tuple[np.ndarray, str]:
    rows = max(SIZES.recipe_n, SIZES.sweep_n, *SIZES.encode_ns)
    return bench.load_images(bench.data_path(), rows)


@pytest.fixture(scope="session")
def images() -> np.ndarray:
    """(rows, 784) float32 raw pixels: real digits, tiled, or random ones."""
    return _images()[0]


@pytest.fixture(scope="session")
def metadata() -> dict:
    """Backend, device, versions, command, load, data and sizes of this run."""
    return bench.metadata(data=_images()[1], sizes=dataclasses.asdict(SIZES))


@pytest.fixture
def record(benchmark, metadata):
    """``record(**info)`` adds to the benchmark's extra_info, after the run's metadata."""
    benchmark.extra_info["metadata"] = metadata
    return benchmark.extra_info.update
