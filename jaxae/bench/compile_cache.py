"""Compilation and the persistent cache: a cold process, then one that reads the cache.

Both are fresh Python processes training the original recipe's model with one
``jax_compilation_cache_dir``; the settings are made in the child, never here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_CACHE_CHILD = """
import time
t0 = time.perf_counter()
import json, sys
import jax
jax.config.update("jax_compilation_cache_dir", sys.argv[1])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
import numpy as np
from jaxae.config import ModelConfig, TrainConfig
from jaxae.train import fit
imported = time.perf_counter() - t0
images = np.random.default_rng(0).integers(0, 256, (int(sys.argv[2]), 784), dtype=np.uint8)
first_chunk = []
result = fit(images, model_config=ModelConfig(), train_config=TrainConfig(epochs=2),
             epochs_per_chunk=1, progress=False,
             on_chunk=lambda *_: first_chunk.append(time.perf_counter() - t0))
print(json.dumps(dict(import_seconds=imported, compile_seconds=result.compile_seconds,
                      first_chunk_seconds=first_chunk[0])))
"""


def measure_compile_cache(*, n: int = 3000, timeout: float = 600) -> dict:
    """Two fresh processes train the recipe's model with one persistent cache folder.

    Returns ``{"cold": ..., "warm": ...}``, each with ``import_seconds`` (JAX and
    jaxae), ``compile_seconds`` (``fit``'s), ``first_chunk_seconds`` (script
    start to the first trained epoch), ``startup_seconds`` (the same less the
    imports) and ``process_seconds`` (the whole process, from outside).
    """
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="jaxae-cache-") as cache:
        for which in ("cold", "warm"):
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", _CACHE_CHILD, cache, str(n)],
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            if proc.returncode:
                tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
                raise RuntimeError(f"{which} process failed ({proc.returncode}): {tail}")
            run = json.loads(proc.stdout.strip().splitlines()[-1])
            run["startup_seconds"] = run["first_chunk_seconds"] - run["import_seconds"]
            run["process_seconds"] = time.perf_counter() - start
            runs[which] = run
        files = [p for p in Path(cache).rglob("*") if p.is_file()]
        runs["cache_entries"] = len(files)
        runs["cache_bytes"] = sum(p.stat().st_size for p in files)
    return runs
