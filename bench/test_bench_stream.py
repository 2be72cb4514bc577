"""encode_file (streamed in chunks) against encoder.encode(np.load(file)) (all in memory).

The input is an (N, 784) uint8 .npy of random pixels, the model the default
784-256-100 with random parameters (speed does not depend on training). Both
tests share a benchmark group; the streamed one runs first, so its memory is
measured before the in-memory one has touched gigabytes, and the in-memory one
records the speed ratio. Each records rows/s and two memory peaks for one call:
``traced_peak_mb`` (tracemalloc: NumPy buffers and Python objects) and, on
Linux, ``rss_anon_peak_mb`` (anonymous resident memory above the level before
the call, sampled every 2 ms: adds XLA's buffers, which on the CPU backend are
host memory; excludes the page cache of mapped files).

  pytest bench/test_bench_stream.py                                  # N = 1,000,000
  JAXAE_BENCH_N=10000000 pytest bench/test_bench_stream.py -k stream # 7.8 GB input
  JAXAE_BENCH_QUICK=1 pytest bench/test_bench_stream.py --benchmark-disable   # smoke: N = 20,000
"""

from __future__ import annotations

import os
import threading
import time
import tracemalloc
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxae.config import ModelConfig
from jaxae.encoder import Encoder
from jaxae.model import build_model
from jaxae.stream import encode_file

QUICK = os.environ.get("JAXAE_BENCH_QUICK") == "1"
N = int(os.environ.get("JAXAE_BENCH_N", 20_000 if QUICK else 1_000_000))
CHUNK_ROWS = 65536
ROUNDS = 3

_BASELINE: dict[str, float | None] = {}
pytestmark = pytest.mark.benchmark(group=f"encode-{N}")


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    config = ModelConfig()
    params = jax.jit(build_model(config).init)(jax.random.key(0), jnp.zeros((1, 784)))
    return Encoder(params, config)


@pytest.fixture(scope="module")
def pixels_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("stream") / f"pixels-{N}.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(N, 784))
    rng = np.random.default_rng(0)
    for start in range(0, N, 100_000):  # written in slices: the benchmark's own memory stays low
        stop = min(start + 100_000, N)
        out[start:stop] = rng.integers(0, 256, (stop - start, 784), dtype=np.uint8)
    out.flush()
    del out
    return path


def _rss_anon() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def measured(fn):
    """Calls fn once: (result, seconds, tracemalloc peak bytes, RssAnon peak rise or None)."""
    start_rss = _rss_anon()
    peak_rss = [start_rss]
    done = threading.Event()

    def sample():
        while not done.wait(0.002):
            peak_rss[0] = max(peak_rss[0], _rss_anon())

    sampler = threading.Thread(target=sample, daemon=True) if start_rss is not None else None
    if sampler:
        sampler.start()
    tracemalloc.start()
    try:
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
        traced_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        done.set()
        if sampler:
            sampler.join()
    rss_rise = None if start_rss is None else max(peak_rss[0], _rss_anon()) - start_rss
    return result, seconds, traced_peak, rss_rise


def record(benchmark, name: str, seconds: float, traced_peak: int, rss_rise: int | None):
    """Records timings and memory; returns the mean seconds (timed rounds, else the one call)."""
    stats = getattr(benchmark, "stats", None)  # None with --benchmark-disable
    mean = seconds if stats is None else stats.stats.mean
    device = jax.devices()[0]
    benchmark.extra_info.update(
        n=N,
        input="uint8 (N, 784) .npy",
        model="784-256-100 float32, random parameters",
        chunk_rows=CHUNK_ROWS,
        rows_per_s=N / mean,
        traced_peak_mb=traced_peak / 1e6,
        rss_anon_peak_mb=None if rss_rise is None else rss_rise / 1e6,
        input_mb=N * 784 / 1e6,
        backend=jax.default_backend(),
        device_kind=device.device_kind,
        jax=jax.__version__,
        numpy=np.__version__,
        cpu_count=os.cpu_count(),
        load_avg_1m=os.getloadavg()[0],  # these machines are shared: note how busy
    )
    print(
        f"\n{name}: N={N:,} {N / mean:,.0f} rows/s, traced peak {traced_peak / 1e6:.1f} MB, "
        f"RssAnon rise {'n/a' if rss_rise is None else f'{rss_rise / 1e6:.0f} MB'}"
    )
    return mean


def test_stream_encode_file(benchmark, encoder, pixels_file, tmp_path):
    out = tmp_path / "codes.npy"
    run = lambda: encode_file(encoder, pixels_file, out, chunk_rows=CHUNK_ROWS, progress=False)
    # Compilation timed apart: a full chunk and the last, shorter one.
    start = time.perf_counter()
    encoder.encode(np.zeros((min(CHUNK_ROWS, N), 784), np.uint8))
    if N % CHUNK_ROWS and N > CHUNK_ROWS:
        encoder.encode(np.zeros((N % CHUNK_ROWS, 784), np.uint8))
    compile_s = time.perf_counter() - start

    shape, seconds, traced_peak, rss_rise = measured(run)
    assert shape == (N, 100)
    benchmark.pedantic(run, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    mean = record(benchmark, "streamed", seconds, traced_peak, rss_rise)
    benchmark.extra_info["compile_s"] = compile_s
    _BASELINE["stream_s"] = mean

    codes = np.load(out, mmap_mode="r")
    rows = np.r_[0:500, N - 500 : N] if N > 1000 else np.arange(N)
    pixels = np.load(pixels_file, mmap_mode="r")
    np.testing.assert_allclose(codes[rows], encoder.encode(pixels[rows]), rtol=1e-4, atol=1e-5)
    if N >= 8 * CHUNK_ROWS:  # bounded by the chunk (4 buffers, jaxae/stream.py), not the file
        assert traced_peak < 5 * CHUNK_ROWS * 784 < N * 784 / 2


def test_in_memory_encode(benchmark, encoder, pixels_file):
    run = lambda: encoder.encode(np.load(pixels_file))
    start = time.perf_counter()
    run()  # compiles the bucket for N rows
    first_call_s = time.perf_counter() - start

    codes, seconds, traced_peak, rss_rise = measured(run)
    assert codes.shape == (N, 100)
    benchmark.pedantic(run, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    mean = record(benchmark, "in memory", seconds, traced_peak, rss_rise)
    benchmark.extra_info["first_call_s"] = first_call_s
    stream_s = _BASELINE.get("stream_s")
    if stream_s is not None:  # None when the streamed test was deselected
        benchmark.extra_info["stream_speed_vs_in_memory"] = mean / stream_s
