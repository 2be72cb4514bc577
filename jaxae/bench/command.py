"""``jaxae bench``: flags, the order of the sections, and the report written as results arrive."""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jaxae._files import check_outside_runs
from jaxae.bench import clustering, peers, report, suite
from jaxae.bench import encode as encoding
from jaxae.bench.compile_cache import measure_compile_cache
from jaxae.bench.data import load_images, load_labelled
from jaxae.bench.harness import latencies
from jaxae.errors import JaxaeError


def _names(text: str, allowed: Sequence[str], what: str) -> list[str]:
    names = [] if text == "none" else [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in allowed]
    if unknown:
        raise JaxaeError(f"unknown {what} {', '.join(unknown)}: use {', '.join(allowed)} or none")
    return names


def add_args(p: argparse.ArgumentParser) -> None:
    """The ``jaxae bench`` flags."""
    p.add_argument("--quick", action="store_true", help="small sizes: a minute or two on 2 cores")
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
        default=",".join(suite.SECTIONS),
        help=f"comma-separated, of {','.join(suite.SECTIONS)} (default: all)",
    )
    p.add_argument(
        "--data",
        default=None,
        help="digits to use: a path to MNIST IDX files or a .npz, mnist or digits "
        "(default: MNIST if jaxae has it cached, else digits)",
    )
    p.add_argument(
        "--time-limit",
        type=float,
        default=None,
        metavar="SECONDS",
        help="skip the measurements that would start after this many seconds",
    )


def main(args: argparse.Namespace | Sequence[str] | None = None) -> int:
    """Run the measurements and write the report; returns the exit status."""
    if not isinstance(args, argparse.Namespace):
        parser = argparse.ArgumentParser(prog="jaxae bench", description=__doc__.splitlines()[0])
        add_args(parser)
        args = parser.parse_args(args)
    names = _names(args.peers, list(peers.PEERS), "peer")
    sections = _names(args.sections, suite.SECTIONS, "section")
    if any(n in peers.TORCH_PEERS for n in names):
        # JAX would otherwise take 75% of a GPU's memory at its first use, leaving torch too little.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    start = time.perf_counter()
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise JaxaeError(f"--out {out} is a file: pass a folder for the report")
    check_outside_runs(out, name="--out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        why = e.strerror or e
        raise JaxaeError(f"cannot make --out {out}: {why}; pass another folder") from None
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    sizes = suite.sizes_for(mode)
    images, source = load_images(args.data, sizes.rows(sections))
    inputs = suite.Inputs(images)
    result: dict[str, Any] = dict(
        metadata=report.metadata(data=source, sizes=dataclasses.asdict(sizes)),
        train=[],
        encode=[],
        clustering=[],
        compile=None,
        skipped={},
        notes=[],
    )
    available = peers.available()
    log = lambda msg: print(f"[{time.perf_counter() - start:6.1f} s] {msg}", file=sys.stderr)

    def out_of_time(what: str) -> bool:
        if args.time_limit is None or time.perf_counter() - start < args.time_limit:
            return False
        result["skipped"][what] = f"not started: past --time-limit {args.time_limit:g} s"
        return True

    def train(section: str) -> None:
        for group in suite.groups(suite.train_cases(sizes, names, [section])):
            missing = [c for c in group if available.get(c.name)]
            for c in missing:
                result["skipped"][c.name] = available[c.name]
            group = [c for c in group if c not in missing]
            if out_of_time(f"{section} {group[0].dtype} batch {group[0].batch}"):
                continue
            rows, failures = suite.run_group(group, inputs, log=log)
            result["train"] += rows
            result["skipped"].update(failures)
            report.write_report(result, out, png=False)

    def encode() -> None:
        for n in sizes.encode_ns:
            for dtype in encoding.INPUTS:
                for where in encoding.PATHS:
                    if out_of_time(f"encode {n} {dtype} {where}"):
                        continue
                    call = encoding.encode_call(images[:n], input_dtype=dtype, path=where)
                    times = latencies(call, seconds=sizes.encode_seconds)
                    row = encoding.encode_row(n, dtype, where, times)
                    result["encode"].append(row)
                    log(f"encode {n} {dtype} {where}: {1e3 * row['median_seconds']:.4g} ms")

    def compile_cache() -> None:
        if out_of_time("compile"):
            return
        try:
            result["compile"] = measure_compile_cache(n=sizes.cache_n)
        except (RuntimeError, subprocess.TimeoutExpired, ValueError) as e:
            result["compile"] = {"error": str(e)}
        log(f"compile: {result['compile']}")

    def cluster_stage() -> None:
        if out_of_time("clustering"):
            return
        images, labels, where = load_labelled(args.data, sizes.clustering_n)
        result["metadata"]["clustering_data"] = f"{where}; codes: {clustering.CODES}"
        codes = clustering.make_codes(images)
        status = clustering.available(names)
        result["skipped"].update({f"clustering {k}": v for k, v in status.items() if v})
        chosen = [k for k, v in status.items() if v is None]
        rows, failures = clustering.measure(
            codes, labels, chosen, repeats=sizes.clustering_repeats, log=log
        )
        result["clustering"] = rows
        result["skipped"].update({f"clustering {k}": v for k, v in failures.items()})

    steps = {"encode": encode, "compile": compile_cache, "clustering": cluster_stage}
    log(f"data: {source}; sizes: {mode}")
    for section in suite.SECTIONS:
        if section in sections:
            steps.get(section, lambda s=section: train(s))()
            report.write_report(result, out)
    result["metadata"]["load_average_end"] = list(os.getloadavg())
    result["metadata"]["seconds"] = time.perf_counter() - start
    report.write_report(result, out)
    print(
        f"wrote {out}/bench.json, bench.md, bench.png "
        f"({report.results_name(result['metadata']['device_kind'])}, "
        f"{result['metadata']['seconds']:.0f} s)"
    )
    return 0
