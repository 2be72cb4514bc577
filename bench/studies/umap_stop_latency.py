#!/usr/bin/env python3
"""Seconds from a SIGINT to the exit of a JAX UMAP fit, in each of its steps.

A child process fits :func:`jaxae.cluster.umap.fit_umap` (umap-learn's
defaults for N above 10,000: 200 epochs, 20 neighbours, 10 dimensions) on the
first ``--n`` rows of PCA-100 of the MNIST pixels (pixels / 255, centred, the
principal axes of every 7th image), with ``should_stop`` from
:func:`jaxae.signals.stop_on_signals`, as ``jaxae run`` passes it. The child prints
a line when it enters each step; the parent waits for the step's line, waits
``--into`` seconds more (so the signal lands inside the step, not at its start),
sends SIGINT and times the exit. One child per step: a stop ends the fit. Its result
is in docs/reliability.md.

    PYTHONPATH=. python bench/studies/umap_stop_latency.py \\
        --images ../shared/data/mnist --n 70000
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import time

# The steps of fit_umap a child announces: (module, function) it wraps.
STEPS = {
    "neighbours": ("umap.drive", "neighbours"),
    "bandwidths": ("umap.fit", "_smooth_knn_dist"),
    "fuzzy union": ("umap.fit", "_fuzzy_union"),
    "prune": ("umap.fit", "_prune"),
    "spectral start": ("umap.fit", "_initial_embedding"),
    "layout capacity": ("umap.fit", "layout_capacity"),
    "layout": ("umap.drive", "layout"),
}


def child(features: str) -> None:
    from jaxae.signals import stop_on_signals

    with stop_on_signals() as stopped:
        import importlib

        import numpy as np

        from jaxae.cluster.umap import fit_umap
        from jaxae.loop import Stopped

        for step, (module, name) in STEPS.items():
            module = importlib.import_module(f"jaxae.cluster.{module}")
            real = getattr(module, name)

            def announced(*args, _real=real, _step=step, **kwargs):
                print(f"ENTER {_step}", flush=True)
                return _real(*args, **kwargs)

            setattr(module, name, announced)
        x = np.load(features)
        try:
            fit_umap(x, should_stop=stopped)
        except Stopped as e:
            print(f"STOPPED {e}", flush=True)
            os._exit(130)
        print("FINISHED", flush=True)


def features_file(images: str, n: int, path: str) -> None:
    import numpy as np

    from jaxae.data import load_dataset

    x = np.asarray(load_dataset(images).images, np.float32).reshape(-1, 784)[:n] / 255.0
    x -= x.mean(axis=0)
    _, _, vt = np.linalg.svd(x[::7], full_matrices=False)
    np.save(path, (x @ vt[:100].T).astype(np.float32))


def measure(features: str, step: str, into: float) -> tuple[str, float, int, str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", features], stdout=subprocess.PIPE, text=True
    )
    entered = None
    for line in proc.stdout:
        if line.strip() == f"ENTER {step}":
            entered = time.monotonic()
            break
    if entered is None:
        proc.wait()
        return step, float("nan"), proc.returncode, "never entered"
    time.sleep(into)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rest = proc.stdout.read()
    proc.wait()
    seconds = time.monotonic() - sent
    said = [ln for ln in rest.splitlines() if ln.startswith("STOPPED")]
    return step, seconds, proc.returncode, said[0][8:] if said else rest.strip()[-80:]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", default="../shared/data/mnist")
    p.add_argument("--n", type=int, default=70_000)
    p.add_argument("--into", type=float, default=1.0, help="seconds into a step to signal")
    p.add_argument("--steps", default=",".join(STEPS), help="comma-separated steps to signal")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child)
    features = f"/tmp/umap-stop-latency-{args.n}.npy"
    if not os.path.exists(features):
        features_file(args.images, args.n, features)
    print(f"{args.n} x 100 float32, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; signal {args.into} s into each step")  # fmt: skip
    print("| step | signal to exit (s) | exit | message |\n|---|---|---|---|")
    for step in args.steps.split(","):
        step, seconds, code, said = measure(features, step, args.into)
        print(f"| {step} | {seconds:.2f} | {code} | {said} |", flush=True)


if __name__ == "__main__":
    main()
