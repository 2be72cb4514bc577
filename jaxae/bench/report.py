"""The report of a bench run: bench.json (everything), bench.md (tables), bench.png (figure).

Rows are computed here once (``train_row``) and the ratios once (``harness.add_ratios``);
bench/'s pytest wrappers record the same rows. The figure is drawn on a
``matplotlib.figure.Figure``: no pyplot, no backend switched.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import io
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import jax

from jaxae._files import atomic_write, write_json
from jaxae.bench.clustering import CLUSTPY, DESCRIPTIONS, JAX
from jaxae.bench.encode import PATHS
from jaxae.bench.harness import add_ratios
from jaxae.bench.peers import TORCH_PEERS
from jaxae.bench.peers.common import Timing

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
TITLES = {
    "recipe": "Training: the original recipe (batch 100)",
    "sweep": "Training: batch-size sweep",
    "dec": "Pretraining DEC's and N2D's autoencoder D-500-500-2000-10 (linear code, "
    "pixels / 255, Adam 1e-3, batch 256)",
}


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def metadata(**extra: Any) -> dict:
    """Where and how the numbers were measured; ``extra`` is added as given."""
    device = jax.devices()[0]
    versions = (
        "jax", "jaxlib", "jaxae", "flax", "optax", "numpy", "torch", "tensorflow", "keras",
        "umap-learn", "scikit-learn", "clustpy",
    )  # fmt: skip
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


def train_row(
    *, section: str, dtype: str, batch: int, n: int, epochs: int, timing: Timing, flops: int
) -> dict:
    """One implementation's row: time per step and epoch, throughput, every round's time."""
    samples_per_second = batch / timing.seconds_per_step
    return dict(
        section=section,
        implementation=timing.name,
        dtype=dtype,
        batch=batch,
        n=n,
        epochs=epochs,
        seconds_per_step=timing.seconds_per_step,
        seconds_per_epoch=timing.seconds_per_step * (n // batch),
        samples_per_second=samples_per_second,
        tflops=samples_per_second * flops / 1e12,
        flops_per_sample=flops,
        compile_seconds=timing.compile_seconds,
        steps=timing.steps,
        repeats=len(timing.seconds),
        seconds=list(timing.seconds),
        cpu_seconds=list(timing.cpu_seconds),
        final_loss=timing.final_loss,
        device=timing.device,
    )


def notes(report: dict) -> list[str]:
    """Caveats that the numbers alone do not show."""
    meta, out = report["metadata"], []
    if "MNIST cache" in meta["data"]:
        out.append(f"Data: {meta['data']}.")
    load = max(meta["load_average"][0], *meta.get("load_average_end", [0.0])[:1])
    if load > meta["host_cpus"]:
        out.append(
            f"The machine was busy (load average up to {load:.1f} on {meta['host_cpus']} CPUs): "
            "absolute times are inflated; ratios, taken round by round, still compare."
        )
    ran = [r["implementation"] for r in report["train"] + report.get("clustering", [])]
    torch_ran = any(name in TORCH_PEERS or name == CLUSTPY for name in ran)
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


def _ratio(r: dict, key: str = "ratio_vs_jaxae") -> str:
    if r[key] is None:
        return "-"
    cell = f"{r[key]:.2f}"
    if r["ratio_min"] != r["ratio_max"]:
        cell += f" [{r['ratio_min']:.2f}, {r['ratio_max']:.2f}]"
    return cell


def markdown(report: dict) -> str:
    """bench.md: one table per section, then notes, failures and metadata."""
    meta = report["metadata"]
    unit, scale = ("µs", 1e6) if meta["backend"] == "gpu" else ("ms", 1e3)
    lines = [f"# jaxae benchmarks: {meta['device_kind']} ({meta['backend']}), {meta['date']}", ""]
    for section, title in TITLES.items():
        rows = [r for r in report["train"] if r["section"] == section]
        if not rows:
            continue
        lines += [
            f"## {title}, {rows[0]['n']:,} rows",
            "",
            f"| implementation | dtype | batch | {unit}/step | s/epoch | samples/s | TFLOP/s "
            "| compile s | epochs x runs | final loss | ratio vs jaxae [min, max] |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in rows:
            lines.append(
                f"| {r['implementation']} | {r['dtype']} | {r['batch']} "
                f"| {_fmt(scale * r['seconds_per_step'], '.4g')} "
                f"| {_fmt(r['seconds_per_epoch'], '.3g')} | {r['samples_per_second']:,.0f} "
                f"| {r['tflops']:.3g} | {r['compile_seconds']:.2f} "
                f"| {r['epochs']} x {r['repeats']} | {r['final_loss']:.4f} | {_ratio(r)} |"
            )
        lines += [
            "",
            "Time per step: the median over the timed runs. ratio vs jaxae = the "
            "implementation's time per step / jaxae's in the same round (the implementations "
            "run in turn, round after round), median [min, max] over the rounds; above 1, "
            "jaxae is faster. TFLOP/s counts 6 x kernel weights per sample (the usual rule; "
            "the model does less, as the input needs no gradient). jaxae and the jax-scan "
            "programs are warmed up by one identical run, the others by one epoch. jax-scan "
            "keeps no loss, so XLA skips computing it; jax-scan-loss keeps each epoch's mean "
            "loss, as jaxae does.",
            "",
        ]
    if report["encode"]:
        lines += [
            "## Encoding latency (ms)",
            "",
            "| N | input | with copies: median | p99 | on device: median | p99 | copies cost (x) |",
            "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        by_key = {(r["n"], r["input_dtype"], r["path"]): r for r in report["encode"]}
        for n, dtype in dict.fromkeys((r["n"], r["input_dtype"]) for r in report["encode"]):
            host, dev = by_key.get((n, dtype, "host")), by_key.get((n, dtype, "device"))
            stats = ("median_seconds", "p99_seconds")
            cells = [_fmt(r and 1e3 * r[k]) for r in (host, dev) for k in stats]
            cost = host and dev and host["median_seconds"] / dev["median_seconds"]
            lines.append(f"| {n:,} | {dtype} | {' | '.join(cells)} | {_fmt(cost, '.1f')} |")
        lines += [
            "",
            "With copies: `Encoder.encode` on a NumPy array (checks, padding to a size bucket, "
            "host-to-device and back). On device: the jitted `encode_fn` on a device array of "
            "exactly N rows, blocked on.",
            "",
        ]
    lines += _clustering_markdown(report)
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
    if report["notes"]:
        lines += ["## Notes", ""] + [f"- {note}" for note in report["notes"]] + [""]
    if report["skipped"]:
        lines += ["## Skipped or failed", ""]
        lines += [f"- {name}: {reason}" for name, reason in report["skipped"].items()]
        lines.append("")
    lines += ["## Metadata", ""]
    for k, v in meta.items():
        lines.append(f"- {k}: {json.dumps(v) if isinstance(v, dict | list) else v}")
    return "\n".join(lines) + "\n"


def _clustering_markdown(report: dict) -> list[str]:
    rows = report.get("clustering") or []
    if not rows:
        return []
    lines = [
        f"## Clustering: UMAP + Gaussian mixture on the same codes, {rows[0]['n']:,} rows",
        "",
        "| implementation | first call s | s (median) | rounds | ratio vs jax [min, max] "
        "| ACC | NMI | ARI |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        score = " | ".join(_fmt(r[k], ".3f") for k in ("acc", "nmi", "ari"))
        lines.append(
            f"| {r['implementation']} | {r['first_call_seconds']:.2f} "
            f"| {_fmt(r['median_seconds'])} | {len(r['seconds'])} "
            f"| {_ratio(r, 'ratio_vs_jax')} | {score} |"
        )
    lines += ["", *(f"- {r['implementation']}: {DESCRIPTIONS[r['implementation']]}" for r in rows)]
    lines += [
        "",
        f"Codes: {report['metadata'].get('clustering_data', '-')}. UMAP to {rows[0]['features']} "
        f"dimensions, {rows[0]['neighbors']} neighbours, min_dist 0, seeded; a full-covariance "
        f"mixture of {rows[0]['clusters']} components, the best of {rows[0]['n_init']} starts. "
        "First call: compilation (XLA's; numba's for umap-learn) and one fit. s: the median "
        "over the rounds that follow, each running every implementation once in turn; ratio "
        "vs jax = its time / the JAX backends' in the same round, median [min, max]; above 1, "
        "JAX is faster. ACC, NMI, ARI: the first call's clusters against the labels.",
        "",
    ]
    return lines


def figure_png(report: dict) -> bytes:
    """bench.png: sweep throughput against batch size; encode latency against N; and,
    where the clustering section ran, each implementation's seconds for the stage."""
    from matplotlib.figure import Figure

    clustered = report.get("clustering") or []
    fig = Figure(figsize=(18 if clustered else 12, 4.5))
    left, right, *third = fig.subplots(1, 3 if clustered else 2)
    sweep = [r for r in report["train"] if r["section"] == "sweep"]
    for impl, dtype in dict.fromkeys((r["implementation"], r["dtype"]) for r in sweep):
        rs = [r for r in sweep if r["implementation"] == impl and r["dtype"] == dtype]
        left.plot(
            [r["batch"] for r in rs],
            [r["samples_per_second"] for r in rs],
            "-" if dtype == "float32" else "--",
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
    for path, dtype in dict.fromkeys((r["path"], r["input_dtype"]) for r in report["encode"]):
        rs = [r for r in report["encode"] if r["path"] == path and r["input_dtype"] == dtype]
        right.plot(
            [r["n"] for r in rs],
            [1e3 * r["median_seconds"] for r in rs],
            marker="o",
            label=f"{PATHS[path]}, {dtype} input",
        )
    right.set(
        xscale="log", yscale="log", xlabel="rows N", ylabel="median latency (ms)", title="encoding"
    )
    if clustered:
        _clustering_panel(third[0], clustered)
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def _clustering_panel(ax, rows: list[dict]) -> None:
    """A bar per implementation: its median seconds (min to max over rounds), its ACC."""
    names = [r["implementation"] for r in rows]
    median = [r["median_seconds"] or r["first_call_seconds"] for r in rows]
    spread = [
        [m - min(r["seconds"] or [m]) for m, r in zip(median, rows)],
        [max(r["seconds"] or [m]) - m for m, r in zip(median, rows)],
    ]
    bars = ax.barh(names, median, xerr=spread, color=["C0" if n == JAX else "C1" for n in names])
    ax.bar_label(bars, ["" if r["acc"] is None else f" ACC {r['acc']:.3f}" for r in rows])
    ax.invert_yaxis()
    ax.set(xlabel="seconds (median over rounds)", title=f"UMAP + GMM, {rows[0]['n']:,} codes")
    ax.grid(True, axis="x", alpha=0.3)


def write_report(report: dict, out: Path, *, png: bool = True) -> None:
    """Writes out/bench.json and out/bench.md (and out/bench.png), each atomically."""
    add_ratios(report["train"])
    report["notes"] = notes(report)
    write_json(out / "bench.json", report)
    atomic_write(out / "bench.md", markdown(report).encode())
    if png:
        atomic_write(out / "bench.png", figure_png(report))
