"""Encoding latency for N rows: with the host copies (``Encoder.encode`` on NumPy
input) and without (the jitted ``encode_fn`` on a device array of exactly N
rows), float32 and uint8 input. Each group ``encode-<N>`` holds the four; the
time columns are per call; extra_info adds the median, p99 and, for the host
path, ``copies_cost`` (its median over the device path's).

  pytest bench/test_bench_encode.py -k 70000
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from jaxae.bench import encode, harness, suite

SIZES = suite.sizes_for("quick" if os.environ.get("JAXAE_BENCH_QUICK") == "1" else "full")
_DEVICE_MEDIAN: dict[tuple[int, str], float] = {}


@pytest.mark.parametrize("path", list(encode.PATHS))
@pytest.mark.parametrize("input_dtype", encode.INPUTS)
@pytest.mark.parametrize("n", SIZES.encode_ns)
def test_encode(benchmark, record, images, n, input_dtype, path):
    benchmark.group = f"encode-{n}"
    call = encode.encode_call(images[:n], input_dtype=input_dtype, path=path)
    probe = harness.latencies(call, seconds=0.0)  # compiles, then 5 calls to size the rounds
    rounds = int(np.clip(SIZES.encode_seconds / np.median(probe), 5, 1000))
    benchmark.pedantic(call, rounds=rounds, iterations=1, warmup_rounds=2)
    stats = getattr(benchmark, "stats", None)
    if stats is None:  # --benchmark-disable: ran once
        record(n=n, input_dtype=input_dtype, path=path)
        return
    row = encode.encode_row(n, input_dtype, path, np.asarray(stats.stats.data))
    if path == "device":
        _DEVICE_MEDIAN[n, input_dtype] = row["median_seconds"]
    elif (n, input_dtype) in _DEVICE_MEDIAN:
        row["copies_cost"] = row["median_seconds"] / _DEVICE_MEDIAN[n, input_dtype]
    record(**row)
