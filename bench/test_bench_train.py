"""Training speed: jaxae beside its peers on the same data, with ratios from the same run.

The cases are ``jaxae.bench.train_cases``, as ``jaxae bench`` runs them: the
original recipe (batch 100) and a batch-size sweep, grouped by section, dtype
and batch so that each peer sits beside jaxae. A benchmark times one whole
measurement, compilation and warm-up included, so compare extra_info, not the
time columns: ``seconds_per_step``, ``samples_per_second``, ``tflops``,
``compile_seconds`` and ``ratio_vs_jaxae`` (the implementation's time per step
over jaxae's; above 1, jaxae is faster). Peers that are not installed, or fail
here, are skipped with the reason.

  pytest bench/test_bench_train.py -k recipe --benchmark-json=train.json
"""

from __future__ import annotations

import functools
import os

import pytest

from jaxae import bench, peers
from jaxae.config import ModelConfig

SIZES = bench.sizes_for("quick" if os.environ.get("JAXAE_BENCH_QUICK") == "1" else "full")
CASES = bench.train_cases(SIZES, list(peers.PEERS))
_JAXAE_SECONDS: dict[tuple, float] = {}  # (section, dtype, batch) -> jaxae's seconds per step
_STANDARDIZED = {}  # n -> the peers' input, the first n rows standardised


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=f"{c.section}-{c.dtype}-b{c.batch}-{c.name}") for c in CASES]
)
def test_train(benchmark, record, images, case):
    reason = peers.available().get(case.name)
    if reason:
        pytest.skip(reason)
    benchmark.group = f"{case.section}-{case.dtype}-b{case.batch}"
    raw = images[: case.n]
    if case.name in peers.PEERS and case.n not in _STANDARDIZED:
        _STANDARDIZED[case.n] = bench.standardized(raw)
    run = functools.partial(
        bench.time_train,
        case.name,
        raw,
        x=_STANDARDIZED.get(case.n),
        batch_size=case.batch,
        epochs=case.epochs,
        warmup_epochs=case.warmup_epochs,
        dtype=case.dtype,
    )
    try:
        timing = benchmark.pedantic(run, rounds=1, iterations=1)
    except Exception as e:
        if case.name in peers.PEERS:  # a peer that fails here is a note, never a failure
            pytest.skip(f"{case.name} failed: {type(e).__name__}: {e}")
        raise
    row = bench.train_row(case, timing, bench.flops_per_sample(ModelConfig()))
    key = (case.section, case.dtype, case.batch)
    if case.name == bench.JAXAE:
        _JAXAE_SECONDS[key] = timing.seconds_per_step
    base = _JAXAE_SECONDS.get(key)
    record(**row, ratio_vs_jaxae=None if base is None else timing.seconds_per_step / base)


@pytest.mark.benchmark(group="compile")
def test_compile_cache(benchmark, record):
    """A cold process, then a second one that reads the persistent compilation cache."""
    result = benchmark.pedantic(
        bench.measure_compile_cache, kwargs=dict(n=SIZES.cache_n), rounds=1, iterations=1
    )
    record(**result)
