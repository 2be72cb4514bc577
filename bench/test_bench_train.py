"""Training speed: jaxae beside its peers on the same data, with ratios from the same run.

Each benchmark is one group of ``jaxae.bench.suite``, as ``jaxae bench`` runs it: the
original recipe (batch 100), a batch-size sweep, and DEC's and N2D's autoencoder, each
(section, dtype, batch) with jaxae first and its peers after it, timed in alternation,
round after round, by ``jaxae.bench.harness``. The benchmark's own time columns are the
whole group (compilation and warm-up included): compare extra_info, which holds the
package's rows (``seconds_per_step``, ``samples_per_second``, ``tflops``,
``compile_seconds``, ``ratio_vs_jaxae`` with ``ratio_min``/``ratio_max`` over the rounds)
and the peers that were not installed or failed.

  pytest bench/test_bench_train.py -k sweep --benchmark-json=train.json
"""

from __future__ import annotations

import os

import pytest

from jaxae.bench import peers, suite

SIZES = suite.sizes_for("quick" if os.environ.get("JAXAE_BENCH_QUICK") == "1" else "full")
GROUPS = suite.groups(suite.train_cases(SIZES, list(peers.PEERS)))


@pytest.mark.parametrize(
    "group", [pytest.param(g, id=f"{g[0].section}-{g[0].dtype}-b{g[0].batch}") for g in GROUPS]
)
def test_train(benchmark, record, inputs, group):
    available = peers.available()
    missing = {c.name: available[c.name] for c in group if available.get(c.name)}
    benchmark.group = f"train-{group[0].section}"
    runnable = [c for c in group if c.name not in missing]
    rows, failures = benchmark.pedantic(
        suite.run_group, args=(runnable, inputs), rounds=1, iterations=1
    )
    record(rows=rows, skipped={**missing, **failures})
    assert rows[0]["implementation"] == peers.JAXAE or group[0].section == "dec"


@pytest.mark.benchmark(group="compile")
def test_compile_cache(benchmark, record):
    """A cold process, then a second one that reads the persistent compilation cache."""
    from jaxae.bench.compile_cache import measure_compile_cache

    result = benchmark.pedantic(
        measure_compile_cache, kwargs=dict(n=SIZES.cache_n), rounds=1, iterations=1
    )
    record(**result)
