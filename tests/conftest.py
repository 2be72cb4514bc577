"""Makes JAX stricter for every test, as equinox does: implicit rank promotion in
library code is a bug, so it raises instead of passing silently.

Strict dtype promotion is not switched on: optax's Adam itself relies on
standard promotion (``decay ** count`` with an int32 count).

Under pytest-xdist it also gives each worker its share of the cores' BLAS and
OpenMP threads, and every process of the session one XLA compilation cache.
"""

import os
import shutil
import tempfile

# Under pytest-xdist every core already runs a worker: one BLAS or OpenMP thread per
# worker, not one per core. OpenBLAS and libgomp threads that outnumber the cores
# spin while they wait; here three scikit-learn mixtures on 800 codes took 45 s
# instead of 1.5 s. Set before NumPy loads (JAX imports it) and inherited by every
# `jaxae run` child; a value already set is kept.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
if _WORKERS:
    _THREADS = str(max(1, (os.cpu_count() or 1) // _WORKERS))
    for _pool in ("OMP", "OPENBLAS", "MKL", "NUMBA"):
        os.environ.setdefault(f"{_pool}_NUM_THREADS", _THREADS)

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


import pytest  # noqa: E402

from jaxae.config import ModelConfig, TrainConfig  # noqa: E402
from jaxae.data import load_dataset  # noqa: E402
from jaxae.train import fit  # noqa: E402

# One persistent XLA cache for the whole session: this process, the xdist workers and
# every `jaxae run` child compile each program once between them, not once each.
# Our own folder, never a cache of the user's that JAX_COMPILATION_CACHE_DIR may name.
_CACHE = "JAXAE_TESTS_XLA_CACHE"


def pytest_configure(config):
    if not os.environ.get(_CACHE):  # the first process; workers and children inherit it
        os.environ[_CACHE] = tempfile.mkdtemp(prefix="jaxae-tests-xla-")
        config._jaxae_cache = os.environ[_CACHE]
    os.environ["JAX_COMPILATION_CACHE_DIR"] = os.environ[_CACHE]
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    jax.config.update("jax_compilation_cache_dir", os.environ[_CACHE])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_unconfigure(config):
    cache = getattr(config, "_jaxae_cache", None)
    if cache:
        shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture(scope="session")
def trained():
    """A tiny autoencoder trained on 256 real digits: (dataset, model_config, TrainResult)."""
    ds = load_dataset("digits", n=256)
    model_config = ModelConfig.tiny()
    result = fit(
        ds.images, model_config=model_config, train_config=TrainConfig.tiny(), progress=False
    )
    return ds, model_config, result
