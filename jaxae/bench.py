"""Benchmarks: jaxae's training and encoding speed beside its peers, measured in one run.

``jaxae bench [--quick] [--out DIR]`` (or ``python -m jaxae.bench``) times

- training on the original recipe (3,000 digits, batch 100) and a batch-size
  sweep on 70,000 rows (mnist-5k tiled), float32 and bfloat16: jaxae as users
  run it (``fit``; compilation timed apart) and every installed peer
  (``jaxae.peers``) on the same data, as time per step, samples/s and TFLOP/s,
  with each peer's ratio to jaxae measured in the same run;
- encoding latency (median, p99) for N rows, with the host copies
  (``Encoder.encode`` on NumPy input) and without (the jitted ``encode_fn`` on a
  device array of exactly N rows), float32 and uint8 input;
- compilation: a cold process and a second one that reads the persistent cache;

and writes ``bench.json``, ``bench.md`` and ``bench.png`` (rewritten as results
arrive, so a run that is cut short still leaves what it measured). bench/ runs
the same measurements under pytest-benchmark. Machines are shared and noisy:
compare ratios from one run, not absolute times across runs.

Example::

    python -m jaxae.bench --quick --out /tmp/bench     # about a minute on 2 CPU cores
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import importlib.metadata
import io
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxae import peers
from jaxae._files import atomic_write, write_json
from jaxae.config import ModelConfig, TrainConfig
from jaxae.data import load_dataset
from jaxae.encoder import Encoder, encode_fn
from jaxae.errors import JaxaeError
from jaxae.model import build_model
from jaxae.preprocess import standardize
from jaxae.train import default_chunk, fit, loss_fn

JAXAE = "jaxae"  # fit() as users call it: default chunks, one host sync per chunk
JAXAE_1CHUNK = "jaxae-1chunk"  # fit() with the whole run in one chunk (only where that differs)
# Implementations whose whole run is one compiled program: warmed up by one identical run.
WHOLE_RUN = (JAXAE, JAXAE_1CHUNK, "jax-scan")
SECTIONS = ("recipe", "encode", "compile", "sweep")
ENCODE_INPUTS = ("float32", "uint8")
ENV_KEYS = (
    "XLA_FLAGS",
    "XLA_PYTHON_CLIENT_PREALLOCATE",
    "JAX_PLATFORMS",
    "OMP_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "CUDA_VISIBLE_DEVICES",
    "JAXAE_BENCH_DATA",
    "JAXAE_BENCH_QUICK",
)
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist-5k"


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much each measurement runs (see ``SIZES``).

    The "whole-run" implementations (jaxae, jax-scan) train ``recipe_epochs``,
    and in the sweep enough epochs for ``sweep_min_steps`` steps; the others,
    slower per step, train ``peer_epochs`` and ``sweep_peer_epochs``. Peers run
    in float32, and in bfloat16 only when listed in ``bf16_peers``.
    """

    recipe_n: int = 3000
    recipe_epochs: int = 50
    peer_epochs: int = 20
    recipe_dtypes: tuple[str, ...] = ("float32",)
    sweep_n: int = 70_000
    sweep_batches: tuple[int, ...] = (100, 1024, 4096, 16384)
    sweep_dtypes: tuple[str, ...] = ("float32", "bfloat16")
    sweep_min_steps: int = 1
    sweep_peer_epochs: int = 1
    sweep_peers: tuple[str, ...] = ("jax-python-loop", "jax-scan", "torch-eager")
    bf16_peers: tuple[str, ...] = ("jax-scan",)
    encode_ns: tuple[int, ...] = (1, 100, 10_000, 70_000)
    encode_seconds: float = 1.0  # timing budget per encode case
    cache_n: int = 3000


SIZES = {
    # 2 CPU cores: about 8 minutes on a busy machine, most of it in the 70,000-row sweep.
    "cpu": Sizes(sweep_min_steps=8),
    # One H100/H200: about 3 minutes, mostly compilation (each sweep point compiles).
    "gpu": Sizes(
        recipe_epochs=500,
        recipe_dtypes=("float32", "bfloat16"),
        sweep_batches=(100, 1024, 4096, 16384, 65536),
        sweep_min_steps=300,
        sweep_peer_epochs=2,
        bf16_peers=("jax-scan", "torch-eager"),
        encode_seconds=0.25,
    ),
    "quick": Sizes(
        recipe_n=1000,
        recipe_epochs=5,
        peer_epochs=1,
        sweep_n=2048,
        sweep_batches=(100, 1024),
        sweep_min_steps=10,
        sweep_peers=(),
        bf16_peers=(),
        encode_ns=(1, 100, 10_000),
        encode_seconds=0.1,
        cache_n=1000,
    ),
    # For tests: seconds, not minutes. The sweep's one point is the recipe's program again.
    "tiny": Sizes(
        recipe_n=300,
        recipe_epochs=2,
        peer_epochs=1,
        sweep_n=300,
        sweep_batches=(100,),
        sweep_dtypes=("float32",),
        sweep_min_steps=6,
        sweep_peers=(),
        bf16_peers=(),
        encode_ns=(1, 100),
        encode_seconds=0.05,
        cache_n=300,
    ),
}


def sizes_for(mode: str = "full") -> Sizes:
    """``"quick"``, ``"tiny"``, or ``"full"``: the full sizes for this backend (GPU or CPU)."""
    if mode != "full":
        return SIZES[mode]
    return SIZES["gpu" if jax.default_backend() == "gpu" else "cpu"]


def flops_per_sample(model_config: ModelConfig) -> int:
    """Training FLOPs per sample by the usual rule: 6 x the kernel weights (6 x 452,608
    for the default model), as PERF.md and the targets count them.

    The model does less: no gradient flows to the input, so the first layer's
    backward is 2x, not 4x, its weights (2 x 784 x 256 fewer, 15% for the
    default model; XLA's cost analysis agrees). Biases, activations and Adam
    add under 0.5%.
    """
    d, h, c = model_config.input_dim, model_config.hidden, model_config.code_dim
    return 6 * (2 * d * h + 2 * h * c)


# --- data --------------------------------------------------------------------------------


def data_path(explicit: str | os.PathLike | None = None) -> Path:
    """The digits to benchmark on: ``explicit``, else ``$JAXAE_BENCH_DATA``, else mnist-5k."""
    return Path(explicit or os.environ.get("JAXAE_BENCH_DATA") or DEFAULT_DATA)


def load_images(path: str | os.PathLike, n: int) -> tuple[np.ndarray, str]:
    """(n, 784) float32 raw pixels and where they came from.

    Real digits from ``path`` (a dataset path for ``load_dataset``), tiled to
    ``n`` rows; random 0-255 integers when the path does not exist.
    """
    path = Path(path)
    if path.exists():
        images = load_dataset(str(path)).images
        source = f"{path} ({len(images)} images" + (f", tiled to {n})" if n > len(images) else ")")
    else:
        images = np.random.default_rng(0).integers(0, 256, (5000, 784)).astype(np.float32)
        source = f"random 0-255 pixels ({path} not found)"
    return np.resize(images, (n, images.shape[1])), source


def standardized(images: np.ndarray) -> np.ndarray:
    """The peers' input: ``standardize``d images as a writable float32 NumPy array."""
    return np.array(jax.jit(standardize)(images))


# --- training ----------------------------------------------------------------------------


class Case(NamedTuple):
    """One training measurement: ``name`` trains ``epochs`` after ``warmup_epochs``."""

    section: str
    name: str
    dtype: str
    batch: int
    n: int
    epochs: int
    warmup_epochs: int


def train_cases(sizes: Sizes, names: Sequence[str], sections: Sequence[str] = SECTIONS):
    """The training measurements, group by group: (section, dtype, batch).

    Each group starts with jaxae, its peers right after it, so that the ratios
    compare runs close in time (shared machines drift). ``names`` are the
    peers to include (``jaxae.peers.PEERS`` keys); jaxae is always in.
    """
    cases = []
    groups = []
    if "recipe" in sections:
        groups += [("recipe", dtype, 100, sizes.recipe_n) for dtype in sizes.recipe_dtypes]
    if "sweep" in sections:
        groups += [
            ("sweep", dtype, batch, sizes.sweep_n)
            for dtype in sizes.sweep_dtypes
            for batch in sizes.sweep_batches
        ]
    for section, dtype, batch, n in groups:
        steps = n // batch
        if section == "recipe":
            whole, other = sizes.recipe_epochs, sizes.peer_epochs
            chosen = list(names)
        else:
            whole, other = max(1, math.ceil(sizes.sweep_min_steps / steps)), sizes.sweep_peer_epochs
            chosen = [p for p in names if p in sizes.sweep_peers]
        group = [JAXAE]
        if default_chunk(whole, steps) < whole:  # fit makes several host calls: time one too
            group.append(JAXAE_1CHUNK)
        group += [p for p in chosen if dtype == "float32" or p in sizes.bf16_peers]
        for name in group:
            epochs = whole if name in WHOLE_RUN else other
            warmup = epochs if name in WHOLE_RUN else 1
            cases.append(Case(section, name, dtype, batch, n, epochs, warmup))
    return cases


@functools.partial(jax.jit, static_argnums=1)
def _full_loss(params, model, x):
    return loss_fn(params, model, x)


def time_train(
    name: str,
    images: np.ndarray,
    *,
    batch_size: int,
    epochs: int,
    warmup_epochs: int,
    dtype: str = "float32",
    x: np.ndarray | None = None,
    seed: int = 0,
) -> peers.PeerTiming:
    """Time one implementation training on (N, D) raw ``images``.

    jaxae is timed through ``fit``: its ``compile_seconds``, and
    ``train_seconds`` of a second identical call (the warm-up, when
    ``warmup_epochs``; it reuses the compiled program). Peers are timed by
    ``jaxae.peers.time_peer`` on ``x``, the standardised images (computed when
    None). ``final_loss`` is the MSE over all rows after training.
    """
    if name not in (JAXAE, JAXAE_1CHUNK):
        x = standardized(images) if x is None else x
        return peers.time_peer(
            name,
            x,
            batch_size=batch_size,
            epochs=epochs,
            warmup_epochs=warmup_epochs,
            seed=seed,
            dtype=dtype,
        )
    model_config = ModelConfig(input_dim=images.shape[1], dtype=dtype)
    run = functools.partial(
        fit,
        images,
        model_config=model_config,
        train_config=TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed),
        epochs_per_chunk=epochs if name == JAXAE_1CHUNK else None,
        progress=False,
    )
    first = run() if warmup_epochs else None
    result = run()
    loss = _full_loss(result.state.params, build_model(model_config), jax.jit(standardize)(images))
    return peers.PeerTiming(
        name,
        result.train_seconds / result.steps,
        (first or result).compile_seconds,
        result.steps,
        float(loss),
        jax.devices()[0].device_kind,
    )


def train_row(case: Case, timing: peers.PeerTiming, flops: int) -> dict:
    samples_per_second = case.batch / timing.seconds_per_step
    row = case._asdict()
    return dict(
        implementation=row.pop("name"),
        **row,
        seconds_per_step=timing.seconds_per_step,
        samples_per_second=samples_per_second,
        tflops=samples_per_second * flops / 1e12,
        compile_seconds=timing.compile_seconds,
        steps=timing.steps,
        final_loss=timing.final_loss,
        device=timing.device,
    )


def add_ratios(rows: list[dict]) -> list[dict]:
    """Sets each row's ``ratio_vs_jaxae``: its time per step / jaxae's in the same group.

    Above 1, jaxae is faster. None where the group has no jaxae row.
    """
    key = lambda r: (r["section"], r["dtype"], r["batch"], r["n"])
    base = {key(r): r["seconds_per_step"] for r in rows if r["implementation"] == JAXAE}
    for r in rows:
        ref = base.get(key(r))
        r["ratio_vs_jaxae"] = None if ref is None else r["seconds_per_step"] / ref
    return rows


# --- encoding ----------------------------------------------------------------------------


@functools.cache
def _params(model_config: ModelConfig) -> Any:
    model = build_model(model_config)
    return jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, model_config.input_dim)))


_encode = jax.jit(encode_fn, static_argnames="model_config")
PATH_LABELS = {"host": "with copies", "device": "on device", "folded": "on device, folded"}
_encode_folded = None  # removed: the folded encoder is gone


def encode_call(images: np.ndarray, *, input_dtype: str, path: str) -> Callable[[], Any]:
    """A call that encodes ``images`` once and returns when the codes are ready.

    ``path="host"``: ``Encoder.encode`` on a NumPy array (checks, bucket padding,
    both copies). ``path="device"``: the jitted ``encode_fn`` on a device array
    of exactly these rows, waited on with ``block_until_ready``; ``"folded"``: the
    same with ``encode_folded_fn`` (standardisation folded into the first layer).
    """
    model_config = ModelConfig(input_dim=images.shape[1])
    params = _params(model_config)
    images = images.astype(input_dtype)
    if path == "host":
        encoder = Encoder(params, model_config)
        return lambda: encoder.encode(images)
    x = jax.device_put(images)
    fn = _encode_folded if path == "folded" else _encode
    return lambda: jax.block_until_ready(fn(params, x, model_config=model_config))


def latencies(call: Callable[[], Any], *, seconds: float, warmup: int = 2) -> np.ndarray:
    """Seconds per call: ``warmup`` untimed calls, then 5 to 1,000 timed within ``seconds``."""
    for _ in range(warmup):
        call()
    times = []
    deadline = time.perf_counter() + seconds
    while len(times) < 1000 and (len(times) < 5 or time.perf_counter() < deadline):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return np.asarray(times)


def encode_row(n: int, input_dtype: str, path: str, times: np.ndarray) -> dict:
    median = float(np.median(times))
    return dict(
        n=n,
        input_dtype=input_dtype,
        path=path,
        median_seconds=median,
        p99_seconds=float(np.percentile(times, 99)),
        repeats=len(times),
        rows_per_second=n / median,
    )


# --- compilation and the persistent cache ------------------------------------------------

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


# --- metadata, targets, report -----------------------------------------------------------


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def metadata(**extra: Any) -> dict:
    """Where and how the numbers were measured; ``extra`` is added as given."""
    device = jax.devices()[0]
    versions = ("jax", "jaxlib", "jaxae", "flax", "optax", "numpy", "torch", "tensorflow", "keras")
    return dict(
        backend=jax.default_backend(),
        device_kind=device.device_kind,
        device_count=jax.device_count(),
        versions={p: _version(p) for p in versions},
        python=platform.python_version(),
        command=shlex.join(sys.argv),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        host_cpus=os.cpu_count(),
        load_average=list(os.getloadavg()),
        matmul_precision=str(jax.config.jax_default_matmul_precision),
        env={k: os.environ[k] for k in ENV_KEYS if k in os.environ},
        **extra,
    )


def results_name(device_kind: str) -> str:
    """The file stem for bench/results/: "cpu", "nvidia-h200", ..."""
    return "-".join("".join(c if c.isalnum() else " " for c in device_kind.lower()).split())


def targets(report: dict) -> list[dict]:
    """The issue's targets, each with its measured value and whether it is met (None: not
    measured)."""
    rows, backend = report["train"], report["metadata"]["backend"]

    def find(items, **match):
        return next((r for r in items if all(r[k] == v for k, v in match.items())), None)

    def ratio(name):
        r = find(rows, section="recipe", dtype="float32", implementation=name)
        return r and r["ratio_vs_jaxae"]

    checks = []
    if backend == "cpu":
        checks += [
            ("recipe: Keras time per step / jaxae's >= 3", ratio("keras"), 3, ">="),
            ("recipe: PyTorch eager / jaxae >= 2", ratio("torch-eager"), 2, ">="),
        ]
    checks.append(("recipe: plain whole-run scan / jaxae >= 1", ratio("jax-scan"), 1, ">="))
    if backend == "gpu":
        recipe = find(rows, section="recipe", dtype="float32", implementation=JAXAE)
        bf16 = [
            r["tflops"] for r in rows if (r["implementation"], r["dtype"]) == (JAXAE, "bfloat16")
        ]
        encode = find(report["encode"], n=70_000, input_dtype="float32", path="device")
        cache = report.get("compile") or {}
        checks += [
            ("recipe: us/step <= 40", recipe and 1e6 * recipe["seconds_per_step"], 40, "<="),
            ("bfloat16 large batch: TFLOP/s >= 150", max(bf16, default=None), 150, ">="),
            (
                "encode 70,000 on device: ms <= 0.1",
                encode and 1e3 * encode["median_seconds"],
                0.1,
                "<=",
            ),
            ("cold compile: s <= 2", cache.get("cold", {}).get("compile_seconds"), 2, "<="),
            (
                "second process, start to training: s < 1",
                cache.get("warm", {}).get("startup_seconds"),
                1,
                "<=",
            ),
        ]
    return [
        dict(
            target=label,
            value=value,
            met=None if value is None else bool(value >= bound if op == ">=" else value <= bound),
        )
        for label, value, bound, op in checks
    ]


def notes(report: dict) -> list[str]:
    """Caveats that the numbers alone do not show."""
    meta, out = report["metadata"], []
    if meta["data"].startswith("random"):
        out.append(f"Data: {meta['data']}; speed does not depend on the pixels.")
    load = meta["load_average"][0]
    if load > meta["host_cpus"]:
        out.append(
            f"The machine was busy (load average {load:.1f} on {meta['host_cpus']} CPUs): "
            "absolute times are inflated; ratios from this run still compare."
        )
    torch_ran = any(r["implementation"].startswith("torch") for r in report["train"])
    if torch_ran and meta["backend"] == "cpu" and "OMP_WAIT_POLICY" not in meta["env"]:
        out.append(
            "torch ran with OMP_WAIT_POLICY unset: its OpenMP threads spin while waiting, "
            "which on a busy machine can make it many times slower; "
            "OMP_WAIT_POLICY=PASSIVE avoids that."
        )
    return out


def _fmt(v: Any, spec: str = ".3g") -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 1000 else format(v, spec)


def markdown(report: dict) -> str:
    """bench.md: one table per section, then targets, skipped peers and metadata."""
    meta = report["metadata"]
    gpu = meta["backend"] == "gpu"
    unit, scale = ("µs", 1e6) if gpu else ("ms", 1e3)
    lines = [f"# jaxae benchmarks: {meta['device_kind']} ({meta['backend']}), {meta['date']}", ""]
    titles = {
        "recipe": "Training: the original recipe (batch 100)",
        "sweep": "Training: batch-size sweep",
    }
    for section, title in titles.items():
        rows = [r for r in report["train"] if r["section"] == section]
        if not rows:
            continue
        lines += [
            f"## {title}, {rows[0]['n']:,} rows",
            "",
            f"| implementation | dtype | batch | {unit}/step | samples/s | TFLOP/s | compile s "
            "| epochs | final loss | ratio vs jaxae |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in rows:
            lines.append(
                f"| {r['implementation']} | {r['dtype']} | {r['batch']} "
                f"| {_fmt(scale * r['seconds_per_step'], '.4g')} | {r['samples_per_second']:,.0f} "
                f"| {r['tflops']:.3g} | {r['compile_seconds']:.2f} | {r['epochs']} "
                f"| {r['final_loss']:.4f} | {_fmt(r['ratio_vs_jaxae'], '.2f')} |"
            )
        lines += [
            "",
            "ratio vs jaxae = the implementation's time per step / jaxae's, same run, dtype and "
            f"batch (above 1: jaxae is faster). TFLOP/s counts {report['flops_per_sample']:,} "
            "FLOPs per sample (6 x kernel weights, the usual rule; the model does 15% fewer, "
            "as the input needs no gradient). jaxae and jax-scan are warmed up by one "
            "identical run; the others by one epoch.",
            "",
        ]
    if report["encode"]:
        lines += [
            "## Encoding latency (ms)",
            "",
            "| N | input | with copies: median | p99 | on device: median | p99 "
            "| folded, on device: median | p99 | copies cost (x) |",
            "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        by_key = {(r["n"], r["input_dtype"], r["path"]): r for r in report["encode"]}
        for n, dtype in dict.fromkeys((r["n"], r["input_dtype"]) for r in report["encode"]):
            host, dev = by_key.get((n, dtype, "host")), by_key.get((n, dtype, "device"))
            folded = by_key.get((n, dtype, "folded"))
            stats = ("median_seconds", "p99_seconds")
            cells = [_fmt(r and 1e3 * r[k]) for r in (host, dev, folded) for k in stats]
            cost = host and dev and host["median_seconds"] / dev["median_seconds"]
            lines.append(f"| {n:,} | {dtype} | {' | '.join(cells)} | {_fmt(cost, '.1f')} |")
        lines += [
            "",
            "With copies: `Encoder.encode` on a NumPy array (checks, padding to a size bucket, "
            "host-to-device and back). On device: the jitted `encode_fn` on a device array of "
            "exactly N rows, blocked on. Folded: the same with `encode_folded_fn`, which folds "
            "the per-image standardisation into the first matrix product.",
            "",
        ]
    cache = report.get("compile")
    if cache and "cold" in cache:
        lines += [
            "## Compilation and the persistent cache (seconds)",
            "",
            "| process | imports | compile | start to first epoch | start less imports | whole |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for which in ("cold", "warm"):
            c = cache[which]
            lines.append(
                f"| {which} | {c['import_seconds']:.2f} | {c['compile_seconds']:.3f} "
                f"| {c['first_chunk_seconds']:.2f} | {c['startup_seconds']:.2f} "
                f"| {c['process_seconds']:.2f} |"
            )
        lines += [
            "",
            f"Two fresh processes train the recipe's model with one `jax_compilation_cache_dir` "
            f"({cache['cache_entries']} entries, {cache['cache_bytes'] / 2**20:.1f} MiB).",
            "",
        ]
    elif cache:
        lines += ["## Compilation and the persistent cache", "", f"Failed: {cache['error']}", ""]
    if report["targets"]:
        lines += ["## Targets", "", "| target | measured | met |", "| --- | ---: | --- |"]
        for t in report["targets"]:
            met = {True: "yes", False: "no", None: "not measured"}[t["met"]]
            lines.append(f"| {t['target']} | {_fmt(t['value'])} | {met} |")
        lines.append("")
    if report["notes"]:
        lines += ["## Notes", ""] + [f"- {note}" for note in report["notes"]] + [""]
    if report["skipped"]:
        lines += ["## Skipped", ""]
        lines += [f"- {name}: {reason}" for name, reason in report["skipped"].items()]
        lines.append("")
    lines += ["## Metadata", ""]
    for k, v in meta.items():
        lines.append(f"- {k}: {json.dumps(v) if isinstance(v, dict | list) else v}")
    return "\n".join(lines) + "\n"


def figure(report: dict, path: str | os.PathLike) -> None:
    """bench.png: sweep throughput against batch size; encode latency against N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    sweep = [r for r in report["train"] if r["section"] == "sweep"]
    for impl, dtype in dict.fromkeys((r["implementation"], r["dtype"]) for r in sweep):
        rs = [r for r in sweep if r["implementation"] == impl and r["dtype"] == dtype]
        style = "-" if dtype == "float32" else "--"
        batches = [r["batch"] for r in rs]
        left.plot(
            batches,
            [r["samples_per_second"] for r in rs],
            style,
            marker="o",
            label=f"{impl} {dtype}",
        )
    left.set(
        xscale="log",
        yscale="log",
        xlabel="batch size",
        ylabel="samples / s",
        title=f"training, {report['metadata']['device_kind']}",
    )
    for path_, dtype in dict.fromkeys((r["path"], r["input_dtype"]) for r in report["encode"]):
        rs = [r for r in report["encode"] if r["path"] == path_ and r["input_dtype"] == dtype]
        right.plot(
            [r["n"] for r in rs],
            [1e3 * r["median_seconds"] for r in rs],
            marker="o",
            label=f"{PATH_LABELS[path_]}, {dtype} input",
        )
    right.set(
        xscale="log", yscale="log", xlabel="rows N", ylabel="median latency (ms)", title="encoding"
    )
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def write_report(report: dict, out: Path, *, png: bool = True) -> None:
    """Writes out/bench.json and out/bench.md (and out/bench.png), each atomically."""
    add_ratios(report["train"])
    report["targets"] = targets(report)
    report["notes"] = notes(report)
    write_json(out / "bench.json", report)
    atomic_write(out / "bench.md", markdown(report).encode())
    if png:
        figure(report, out / "bench.png")


# --- the command -------------------------------------------------------------------------


def _names(text: str, allowed: Sequence[str], what: str) -> list[str]:
    names = [] if text == "none" else [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in allowed]
    if unknown:
        raise JaxaeError(f"unknown {what} {', '.join(unknown)}: use {', '.join(allowed)} or none")
    return names


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="small sizes: about a minute on 2 cores")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tests
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs/bench"),
        help="folder for bench.json, bench.md, bench.png (default runs/bench)",
    )
    p.add_argument(
        "--peers",
        default=",".join(peers.PEERS),
        help=f"peers to time, comma-separated, or none (default: {','.join(peers.PEERS)})",
    )
    p.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated, of {','.join(SECTIONS)} (default: all)",
    )
    p.add_argument(
        "--data",
        default=None,
        help="digits to use (default $JAXAE_BENCH_DATA, else ../shared/data/mnist-5k; "
        "random pixels when missing)",
    )
    p.add_argument(
        "--time-limit",
        type=float,
        default=None,
        metavar="SECONDS",
        help="skip the measurements that would start after this many seconds",
    )


def main(args: argparse.Namespace | Sequence[str] | None = None) -> int:
    """``jaxae bench``: run the measurements and write the report; returns the exit status."""
    if not isinstance(args, argparse.Namespace):
        parser = argparse.ArgumentParser(prog="jaxae bench", description=__doc__.splitlines()[0])
        add_args(parser)
        args = parser.parse_args(args)
    names = _names(args.peers, list(peers.PEERS), "peer")
    sections = _names(args.sections, SECTIONS, "section")
    if any(n.startswith("torch") for n in names):
        # JAX would otherwise take 75% of a GPU's memory at its first use, leaving torch too little.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = sizes_for("tiny" if args.tiny else "quick" if args.quick else "full")
    cases = train_cases(sizes, names, sections)
    path = data_path(args.data)
    images, source = load_images(path, max([sizes.recipe_n, *sizes.encode_ns, sizes.sweep_n]))
    flops = flops_per_sample(ModelConfig(input_dim=images.shape[1]))
    report: dict[str, Any] = dict(
        metadata=metadata(data=source, sizes=dataclasses.asdict(sizes)),
        flops_per_sample=flops,
        train=[],
        encode=[],
        compile=None,
        skipped={},
        targets=[],
        notes=[],
    )
    available = peers.available()
    log = lambda msg: print(f"[{time.perf_counter() - start:6.1f} s] {msg}", file=sys.stderr)

    def out_of_time(what: str) -> bool:
        if args.time_limit is None or time.perf_counter() - start < args.time_limit:
            return False
        report["skipped"][what] = f"not started: past --time-limit {args.time_limit:g} s"
        return True

    def train(section: str) -> None:
        data = {}
        for case in (c for c in cases if c.section == section):
            label = f"{section} {case.name} {case.dtype} batch {case.batch}"
            if available.get(case.name):
                report["skipped"][case.name] = available[case.name]
                continue
            if out_of_time(label):
                continue
            if case.n not in data:
                data[case.n] = (images[: case.n], standardized(images[: case.n]))
            raw, x = data[case.n]
            try:
                timing = time_train(
                    case.name,
                    raw,
                    x=x,
                    batch_size=case.batch,
                    epochs=case.epochs,
                    warmup_epochs=case.warmup_epochs,
                    dtype=case.dtype,
                )
            except Exception as e:  # a peer that fails is a note, never a failure
                if case.name in (JAXAE, JAXAE_1CHUNK):
                    raise
                first_line = (str(e).strip().splitlines() or [""])[0]
                report["skipped"][label] = f"{type(e).__name__}: {first_line}"
                log(f"{label}: failed, {report['skipped'][label]}")
                continue
            report["train"].append(train_row(case, timing, flops))
            log(
                f"{label}: {1e3 * timing.seconds_per_step:.4g} ms/step, "
                f"compile {timing.compile_seconds:.2f} s"
            )
            write_report(report, out, png=False)

    def encode() -> None:
        for n in sizes.encode_ns:
            for dtype in ENCODE_INPUTS:
                for where in ("host", "device", "folded"):
                    if out_of_time(f"encode {n} {dtype} {where}"):
                        continue
                    call = encode_call(images[:n], input_dtype=dtype, path=where)
                    row = encode_row(n, dtype, where, latencies(call, seconds=sizes.encode_seconds))
                    report["encode"].append(row)
                    log(f"encode {n} {dtype} {where}: {1e3 * row['median_seconds']:.4g} ms")

    def compile_cache() -> None:
        if out_of_time("compile"):
            return
        try:
            report["compile"] = measure_compile_cache(n=sizes.cache_n)
        except (RuntimeError, subprocess.TimeoutExpired, ValueError) as e:
            report["compile"] = {"error": str(e)}
        log(f"compile: {report['compile']}")

    steps = {
        "recipe": lambda: train("recipe"),
        "encode": encode,
        "compile": compile_cache,
        "sweep": lambda: train("sweep"),
    }
    log(f"data: {source}; sizes: {'tiny' if args.tiny else 'quick' if args.quick else 'full'}")
    for section in SECTIONS:
        if section in sections:
            steps[section]()
            write_report(report, out)
    report["metadata"]["load_average_end"] = list(os.getloadavg())
    report["metadata"]["seconds"] = time.perf_counter() - start
    write_report(report, out)
    print(
        f"wrote {out}/bench.json, bench.md, bench.png "
        f"({results_name(report['metadata']['device_kind'])}, "
        f"{report['metadata']['seconds']:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except JaxaeError as e:
        print(f"jaxae bench: error: {e}", file=sys.stderr)
        sys.exit(2)
