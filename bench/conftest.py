"""Fixtures for the benchmarks in bench/, which the plain test run never collects.

  pytest bench                                           # this backend's full sizes
  JAXAE_BENCH_QUICK=1 pytest bench --benchmark-disable   # CI: each once, small sizes
  pytest bench --benchmark-json=out.json                 # extra_info: metadata, ratios

The digits come from $JAXAE_BENCH_DATA (default ../shared/data/mnist-5k, the
repository's test setup), tiled to the sizes needed; where that folder is missing,
from what ``jaxae.bench.data.load_images`` finds (the MNIST cache, else digits).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path

# JAX would take 75% of a GPU's memory at its first use, leaving the torch peers too little.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import numpy as np
import pytest

from jaxae.bench import report, suite
from jaxae.bench.data import load_images

QUICK = os.environ.get("JAXAE_BENCH_QUICK") == "1"
SIZES = suite.sizes_for("quick" if QUICK else "full")


def mean_seconds(benchmark) -> float | None:
    """The timed rounds' mean, or None when benchmarks are disabled (--benchmark-disable)."""
    stats = getattr(benchmark, "stats", None)
    return None if stats is None else stats.stats.mean


def data_source() -> str | None:
    path = os.environ.get("JAXAE_BENCH_DATA") or "../shared/data/mnist-5k"
    return path if Path(path).exists() else None


@pytest.fixture(scope="session")
def sizes() -> suite.Sizes:
    return SIZES


@functools.cache
def _images() -> tuple[np.ndarray, str]:
    return load_images(data_source(), SIZES.rows())


@pytest.fixture(scope="session")
def images() -> np.ndarray:
    """(rows, D) float32 raw pixels: real digits, tiled."""
    return _images()[0]


@pytest.fixture(scope="session")
def inputs(images) -> suite.Inputs:
    """The images and their scaled copies, shared by every training benchmark."""
    return suite.Inputs(images)


@pytest.fixture(scope="session")
def metadata() -> dict:
    """Backend, device, versions, command, load, data and sizes of this run."""
    return report.metadata(data=_images()[1], sizes=dataclasses.asdict(SIZES))


@pytest.fixture
def record(benchmark, metadata):
    """``record(**info)`` adds to the benchmark's extra_info, after the run's metadata."""
    benchmark.extra_info["metadata"] = metadata
    return benchmark.extra_info.update
