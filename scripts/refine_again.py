#!/usr/bin/env python3
"""Refine a finished DEC/IDEC run's pretrained models again, with other settings.

``jaxae run --resume`` refuses changed cluster flags: a run folder holds one run.
This script takes the run's pretrained autoencoders from its checkpoint, starts
where the run started (the same KMeans or UMAP + GMM of the codes, the same
seeds) and refines them with the run's settings changed by the flags, the way
``jaxae run`` does (``jaxae.methods.cluster_models``): with no flag it gives the
run's own labels. Nothing in the run folder is written. Printed and written as
markdown: per model the start's and the refined ACC / NMI / ARI, the steps and
whether the refinement converged; then the mean and spread over the models. The
labels only score; no choice uses them.

    PYTHONPATH=. python scripts/refine_again.py RUN_DIR --update-interval 30 \\
        --out bench/results/refine-again.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import jax
import numpy as np

from jaxae import cluster, methods
from jaxae.cluster import scores
from jaxae.cluster.refine import budget
from jaxae.errors import JaxaeError
from jaxae.lifecycle import load_run_data, resume_point

sys.path.insert(0, str(Path(__file__).resolve().parent))
from umap_stage_speed import cpu_model  # beside this script

# Flags -> fields of ClusterConfig.refine.
CHANGES = {"update_interval": int, "max_steps": int, "tol": float, "gamma": float, "lr": float}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    for field, kind in CHANGES.items():
        parser.add_argument("--" + field.replace("_", "-"), type=kind, default=None)
    parser.add_argument("--models", default=None, help="comma-separated model indices (all)")
    parser.add_argument("--out", default=None, help="markdown report to write (and .json)")
    args = parser.parse_args(argv)
    try:
        return _main(args)
    except (JaxaeError, OSError) as e:
        print(f"refine_again: {e}", file=sys.stderr)
        return 2


def _main(args) -> int:
    config, _, ckpt = resume_point(args.run_dir)
    cluster_config = config.cluster
    if not cluster.METHODS[cluster_config.method].refines_encoder:
        raise JaxaeError(f"{args.run_dir} clustered with {cluster_config.method}: "
                         "pass a run of --method dec or idec")  # fmt: skip
    changes = {f: getattr(args, f) for f in CHANGES if getattr(args, f) is not None}
    cluster_config = dataclasses.replace(
        cluster_config, refine=dataclasses.replace(cluster_config.refine, **changes)
    )
    config, dataset = load_run_data(args.run_dir, config, ckpt)
    if dataset.labels is None:
        raise JaxaeError(f"{config.data.source} has no labels to score the clusters with")
    count = len(ckpt.models)
    try:
        models = list(range(count)) if args.models is None else [
            int(m) for m in args.models.split(",")]  # fmt: skip
    except ValueError:
        models = []
    if not models or not all(0 <= m < count for m in models):
        raise JaxaeError(f"--models must be comma-separated indices in [0, {count}), e.g. 0,1")
    params = jax.tree.map(lambda a: np.asarray(a)[models], ckpt.state.params)
    seeds = [ckpt.models[m][0] for m in models]

    start = time.perf_counter()
    _, clusterings, _ = methods.cluster_models(
        params, dataset.images, alive=np.ones(len(models), bool),
        model_config=config.model, cluster_config=cluster_config, seeds=seeds,
        devices=config.devices,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    rows = []
    for m, seed, c in zip(models, seeds, clusterings, strict=True):
        rows.append({"model": m, "seed": seed, "start": scores(dataset.labels, c.before),
                     "refined": scores(dataset.labels, c.labels), **c.details})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)

    refine = cluster_config.refine
    lines = [
        f"# {cluster_config.method} refined again from a run's pretrained models",
        "",
        f"Command: `{' '.join(['python', *sys.argv])}`",
        "",
        f"Run: `{args.run_dir}` ({config.data.source}, {len(dataset.images)} images); "
        f"changed: {changes or 'nothing'}; refinement: update interval "
        f"{refine.update_interval}, tol {refine.tol}, "
        f"at most {budget(refine, len(dataset.images))} steps, "
        f"start {refine.start}.",
        f"CPU: {cpu_model()}, {len(os.sched_getaffinity(0))} cores; JAX {jax.__version__}; "
        f"{jax.devices()[0].device_kind}. {seconds:.1f} s for the starts and the refinement.",
        "",
        "| model | seed | start ACC | refined ACC | NMI | ARI | steps | converged |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        f = r["refined"]
        lines.append(
            f"| {r['model']} | {r['seed']} | {r['start']['acc']:.4f} | {f['acc']:.4f} | "
            f"{f['nmi']:.4f} | {f['ari']:.4f} | {r['refine_steps']} | {r['converged']} |"
        )
    acc = np.array([r["refined"]["acc"] for r in rows])
    nmi = np.array([r["refined"]["nmi"] for r in rows])
    lines += ["", f"- refined: ACC {acc.mean():.4f} ± {acc.std():.4f} (worst {acc.min():.4f}), "
              f"NMI {nmi.mean():.4f} over {len(rows)} models"]  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        out = Path(args.out)
        out.write_text(text)
        out.with_suffix(".json").write_text(
            json.dumps({"changes": changes, "rows": rows}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
