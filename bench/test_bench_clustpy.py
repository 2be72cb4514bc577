"""ClustPy beside jaxae: pretraining per epoch, and N2D, DEC, IDEC from pixels to labels.

bench/clustpy_peer.py's measurements (how ClustPy is set up, and where it still
differs: ``jaxae.bench.peers.clustpy``) on the session's labelled digits: the first
``JAXAE_BENCH_CLUSTPY_N`` (default 10,000; 512 quick) images of $JAXAE_BENCH_DATA.
Skipped where ClustPy is not installed (``pip install 'jaxae[peers]'``). The
benchmark's own time columns are the whole measurement: read extra_info, which holds
the rows (seconds, ratios to jaxae, ACC/NMI/ARI).

  pytest bench/test_bench_clustpy.py --benchmark-json=clustpy.json
  JAXAE_BENCH_QUICK=1 pytest bench/test_bench_clustpy.py --benchmark-disable   # CI
"""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest
from clustpy_peer import METHODS, end_to_end, pretraining  # bench/ is on sys.path
from conftest import QUICK, data_source

from jaxae.bench import peers
from jaxae.bench.data import load_labelled

N = 512 if QUICK else int(os.environ.get("JAXAE_BENCH_CLUSTPY_N", "10000"))
EPOCHS, ROUNDS = (1, 1) if QUICK else (2, 3)  # (a): epochs per round, rounds
PRETRAIN, REFINE = (1, 1) if QUICK else (50, 10)  # (b): pretraining epochs, DEC/IDEC passes


@pytest.fixture(scope="module", autouse=True)
def _clustpy():
    reason = peers.available()["clustpy"]
    if reason is not None:
        pytest.skip(reason)


@functools.cache
def _digits() -> tuple[np.ndarray, np.ndarray, str]:
    images, labels, where = load_labelled(data_source(), N)
    if labels is None:
        pytest.skip(f"{where} has no labels")
    return images, labels, where


@pytest.mark.benchmark(group="clustpy-pretraining")
def test_pretraining_per_epoch(benchmark, record):
    images, _, where = _digits()
    rows = benchmark.pedantic(
        pretraining, args=(images,), kwargs=dict(epochs=EPOCHS, rounds=ROUNDS, log=lambda _: None),
        rounds=1, iterations=1,
    )  # fmt: skip
    record(rows=rows, data=where)
    assert [r["implementation"] for r in rows] == ["jaxae", "clustpy"]
    assert all(np.isfinite(r["seconds_per_step"]) and r["seconds_per_step"] > 0 for r in rows)


@pytest.mark.benchmark(group="clustpy-end-to-end")
@pytest.mark.parametrize("method", METHODS)
def test_to_labels(benchmark, record, method):
    images, labels, where = _digits()
    rows = benchmark.pedantic(
        end_to_end, args=(images, labels),
        kwargs=dict(methods=[method], pretrain_epochs=PRETRAIN, refine_epochs=REFINE,
                    log=lambda _: None),
        rounds=1, iterations=1,
    )  # fmt: skip
    record(rows=rows, data=where)
    assert all(0 <= r["acc"] <= 1 and r["seconds"] > 0 for r in rows)
