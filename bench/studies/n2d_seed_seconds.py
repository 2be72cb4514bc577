#!/usr/bin/env python3
"""The per-seed seconds of a ``umap-gmm`` run after pretraining, with each backend.

``n2d-fast`` spends, per seed, the UMAP and mixture of the model's codes
(``methods.cluster_models``) and the pixel baselines (``methods.pixel_baselines``:
KMeans and UMAP + mixture of the scaled pixels). This times both stages, as a run
calls them, on a trained run folder's first model, with the run's options and two
backend pairs: umap-learn + scikit-learn (what ``n2d-fast`` ran before the JAX
backends) and the JAX UMAP + the JAX mixture (the default), alternated over
``--rounds``, each stage from a cold start of its programs in the first round
(compilation and numba included, as a run of one seed pays them) and warm after.
Its result is in docs/benchmarks.md (UMAP and the mixture, per seed).

    PYTHONPATH=. python bench/studies/n2d_seed_seconds.py RUN_DIR --rounds 2 \\
        --out bench/results/n2d-seed-seconds.md
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

from jaxae import methods
from jaxae.checkpoint import encoder_params, load_checkpoint
from jaxae.cluster import scores
from jaxae.config import ClusterConfig
from jaxae.data import load_dataset
from jaxae.preprocess import scale

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backends_same_codes import BACKENDS  # beside this script: the same two pairs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=None, help="markdown report to write")
    args = parser.parse_args(argv)

    ckpt = load_checkpoint(args.run_dir)
    report = json.loads((args.run_dir / "report.json").read_text())
    base = ClusterConfig.from_dict(report["cluster"])
    ds = load_dataset(report["dataset"], n=report["n"])
    model = ckpt.model_config
    seed = ckpt.models[0][0]
    params = jax.tree.map(lambda a: np.asarray(a)[None], encoder_params(ckpt, 0))  # one model
    pixels = np.asarray(scale(ds.images, model.scaling, model.data_range))
    rows = []
    for r in range(args.rounds):
        order = list(BACKENDS.items())[:: 1 if r % 2 == 0 else -1]
        for name, (umap_backend, gmm_backend) in order:
            config = dataclasses.replace(
                base, umap=dataclasses.replace(base.umap, backend=umap_backend),
                gmm=dataclasses.replace(base.gmm, backend=gmm_backend),
            )  # fmt: skip
            start = time.perf_counter()
            _, fits, _ = methods.cluster_models(
                params, ds.images, alive=np.ones(1, bool), model_config=model,
                cluster_config=config, seeds=[seed], progress=False,
            )  # fmt: skip
            codes = time.perf_counter() - start
            start = time.perf_counter()
            pixel = methods.pixel_baselines(pixels, config, seeds=[seed], labels=ds.labels)
            baselines = time.perf_counter() - start
            rows.append({
                "round": r + 1, "backend": name, "codes": codes, "pixels": baselines,
                "acc": scores(ds.labels, fits[0].labels)["acc"],
                "pixel_acc": pixel["pixel_umap_gmm"][seed]["acc"],
            })  # fmt: skip
            print(rows[-1], flush=True)

    lines = [
        "# Per-seed seconds of `umap-gmm` after pretraining, by backend",
        "",
        f"`bench/studies/n2d_seed_seconds.py {args.run_dir.name} --rounds {args.rounds}`: "
        f"the first model (seed {seed}) of a `{report['n']}`-image run of `{report['dataset']}`; "
        f"{os.cpu_count()} CPUs, JAX {jax.__version__}; round 1 includes compilation.",
        "",
        "| round | backends | codes: UMAP + mixture (s) | pixel baselines (s) | total (s) "
        "| ACC codes | ACC pixels |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['round']} | {row['backend']} | {row['codes']:.1f} | {row['pixels']:.1f} "
            f"| {row['codes'] + row['pixels']:.1f} | {row['acc']:.3f} | {row['pixel_acc']:.3f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
