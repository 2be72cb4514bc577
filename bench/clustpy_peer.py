"""ClustPy beside jaxae in one run: pretraining speed, then pixels to labels.

ClustPy (PyTorch, scikit-learn-style DEC, IDEC, N2D) is set up as jaxae's n2d-fast
recipe (d-500-500-2000-10, ReLU, linear code and output, pixels / 255, Adam 1e-3 eps
1e-7, batch 256, N // 256 full batches an epoch, element-mean MSE, Glorot-uniform
first weights); ``jaxae.bench.peers.clustpy`` says how, and where the two still differ.

(a) Pretraining: seconds per epoch of ClustPy's ``FeedforwardAutoencoder.fit`` and of
    ``jaxae.fit``, timed by jaxae.bench's harness in alternation: a warm-up, then
    ``--rounds`` rounds of ``--epochs`` epochs each. ratio = ClustPy's time per step
    over jaxae's in the same round (median [min, max]), and the ratio of the medians.
    jaxae's time is ``fit``'s ``train_seconds`` (compilation apart, as
    ``compile_seconds``); ClustPy's the wall time of its ``fit``.
(b) End to end, pixels to labels, one run each, wall time in this process (jaxae's
    includes compiling): ClustPy's N2D (umap-learn + scikit-learn) against ``jaxae
    run --preset n2d-fast`` (JAX UMAP and mixture; and ``n2d-umap-learn``: the same
    with ``--umap umap-learn --gmm sklearn``, ClustPy's stage); ClustPy's DEC and
    IDEC against jaxae's ``dec`` and ``idec`` on n2d-fast's pretraining. Each pair
    pretrains ``--pretrain-epochs`` epochs and refines ``--refine-epochs`` x (N // 256)
    steps (jaxae with ``refine.tol`` 0, so it runs them all unless its guard stops it:
    ``refine_steps`` says). jaxae runs ``run_experiment`` as ``jaxae run`` does,
    without the pixel baselines and the run folder, its compiled programs dropped
    before each run (``jax.clear_caches``): each pays its compilation, as a new
    process would. umap-learn's numba code is compiled once beforehand, so neither
    side pays it. ACC, NMI and ARI against the labels.

The full measurement (a quiet CPU; roughly half an hour on 2 cores by estimate, mostly
pretraining: 7 runs of 50 epochs on 10,000 digits):

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$PWD python bench/clustpy_peer.py \\
        --data ../shared/data/mnist/t10k-images-idx3-ubyte.gz \\
        --pretrain-epochs 50 --refine-epochs 10 --out bench/results/clustpy

A check that everything runs (a minute or two):

    PYTHONPATH=$PWD python bench/clustpy_peer.py --n 512 --epochs 1 --rounds 1 \\
        --pretrain-epochs 1 --refine-epochs 1 --out /tmp/clustpy

Needs ClustPy (``pip install 'jaxae[peers]'``) and umap-learn (``jaxae[umap]``).
bench/test_bench_clustpy.py runs the same under pytest-benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

# JAX would take 75% of a GPU's memory at its first use, leaving ClustPy's torch too little.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax
import numpy as np

from jaxae._files import atomic_write, write_json
from jaxae.bench import peers, report, suite
from jaxae.bench.data import load_labelled
from jaxae.bench.peers import clustpy
from jaxae.cluster.scores import scores
from jaxae.cluster.umap_gmm import fit_umap_gmm
from jaxae.config import DataConfig, ExperimentConfig
from jaxae.data import Dataset
from jaxae.experiment import run_experiment
from jaxae.presets import apply_preset

RECIPE = peers.DEC_RECIPE
METHODS = ("n2d", "n2d-umap-learn", "dec", "idec")
JAXAE_RUNS = {
    "n2d": ("umap-gmm", "jaxae run --preset n2d-fast (JAX UMAP + JAX mixture)"),
    "n2d-umap-learn": ("umap-gmm", "the same with --umap umap-learn --gmm sklearn"),
    "dec": ("dec", "jaxae run --preset n2d-fast --method dec"),
    "idec": ("idec", "jaxae run --preset n2d-fast --method idec"),
}


def pretraining(images: np.ndarray, *, epochs: int, rounds: int, log=print) -> list[dict]:
    """(a): the report rows of jaxae and ClustPy pretraining ``RECIPE`` on ``images``."""
    n = len(images)
    group = [
        suite.Case("dec", name, "float32", RECIPE.batch_size, n, epochs, warmup, rounds, RECIPE)
        for name, warmup in ((peers.JAXAE, epochs), ("clustpy", 1))
    ]
    rows, failures = suite.run_group(group, suite.Inputs(images), log=log)
    if failures:
        raise RuntimeError(f"pretraining failed: {failures}")
    base = rows[0]["seconds_per_step"]
    for row in rows:
        row["ratio_of_medians"] = row["seconds_per_step"] / base
    return rows


def jaxae_to_labels(
    run: str, images: np.ndarray, *, pretrain_epochs: int, refine_steps: int, n_init: int, seed: int
) -> dict:
    """One ``jaxae run`` of ``JAXAE_RUNS[run]`` on ``images``: its labels and seconds."""
    method = JAXAE_RUNS[run][0]
    cluster: dict = {"method": method, "n_init": n_init}
    if method in ("dec", "idec"):
        cluster["refine"] = {"max_steps": refine_steps, "tol": 0.0}
    if run == "n2d-umap-learn":
        cluster.update(umap={"backend": "umap-learn"}, gmm={"backend": "sklearn"})
    model, train, cluster_config = apply_preset(
        "n2d-fast", train={"epochs": pretrain_epochs}, cluster=cluster,
        input_dim=images.shape[1], seed=seed,
    )  # fmt: skip
    config = ExperimentConfig(
        data=DataConfig(source="given", n=len(images)),
        model=model,
        train=train,
        cluster=cluster_config,
    )
    side = round(float(np.sqrt(images.shape[1])))
    unlabelled = Dataset(images, None, "given", (side, images.shape[1] // side))  # no baselines
    jax.clear_caches()  # compiles as a new `jaxae run` process would, whatever ran before
    start = time.perf_counter()
    experiment = run_experiment(config, dataset=unlabelled, progress=False)
    seconds = time.perf_counter() - start
    r = experiment.report
    return dict(
        seconds=seconds,
        labels=experiment.clusters,
        compile_seconds=r.compile_seconds,
        stage_seconds=r.stage_seconds,
        refine_steps=r.models[r.selected_model].get("refine_steps"),
    )


def clustpy_to_labels(
    method: str, images: np.ndarray, *, pretrain_epochs: int, refine_epochs: int, n_init: int,
    seed: int,
) -> dict:  # fmt: skip
    """One fit of ClustPy's ``method`` on ``images`` / 255: its labels and seconds."""
    start = time.perf_counter()
    found = clustpy.fit_method(
        method, images / 255.0, clusters=10, pretrain_epochs=pretrain_epochs,
        refine_epochs=refine_epochs, n_init=n_init, seed=seed,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    steps = refine_epochs * (len(images) // RECIPE.batch_size) if method != "n2d" else None
    return dict(seconds=seconds, refine_steps=steps, **found)


def compile_umap_learn() -> None:
    """umap-learn's numba functions compiled (above 4,096 rows: NN-descent's too), so
    that no timed run pays for it, whichever runs first."""
    codes = np.random.default_rng(0).standard_normal((4200, 10)).astype(np.float32)
    fit_umap_gmm(codes, clusters=2, n_epochs=5, backend="umap-learn", gmm_backend="sklearn")


def end_to_end(
    images: np.ndarray, labels: np.ndarray, *, methods=METHODS, pretrain_epochs: int,
    refine_epochs: int, n_init: int = 10, seed: int = 0, log=print,
) -> list[dict]:  # fmt: skip
    """(b): a row per (method, implementation), ClustPy's with its ratio to jaxae's."""
    steps = refine_epochs * (len(images) // RECIPE.batch_size)
    same = dict(pretrain_epochs=pretrain_epochs, n_init=n_init, seed=seed)
    if {"n2d", "n2d-umap-learn"} & set(methods):
        start = time.perf_counter()
        compile_umap_learn()
        log(f"umap-learn compiled in {time.perf_counter() - start:.1f} s")
    rows = []
    for i, run in enumerate(methods):
        calls = {"jaxae": lambda r=run: jaxae_to_labels(r, images, refine_steps=steps, **same)}
        if run in clustpy.METHODS:
            calls["clustpy"] = lambda r=run: clustpy_to_labels(
                r, images, refine_epochs=refine_epochs, **same
            )
        order = list(calls) if i % 2 == 0 else list(calls)[::-1]  # neither always first
        done = {}
        for name in order:
            got = calls[name]()
            row = dict(method=run, implementation=name, n=len(images), **same)
            row.update({k: v for k, v in got.items() if not k.endswith("labels")})
            row.update(scores(labels, got["labels"]))
            if "kmeans_labels" in got:
                row["kmeans_relabel"] = scores(labels, got["kmeans_labels"])
            done[name] = row
            log(f"{run} {name}: {row['seconds']:.1f} s, ACC {row['acc']:.3f}, NMI {row['nmi']:.3f}")
        if "clustpy" in done:
            ratio = done["clustpy"]["seconds"] / done["jaxae"]["seconds"]
            done["clustpy"]["ratio_vs_jaxae"] = ratio
        rows += [done[name] for name in calls]
    return rows


def markdown(result: dict) -> str:
    meta = result["metadata"]
    lines = [
        f"# ClustPy beside jaxae: {meta['device_kind']} ({meta['backend']}), {meta['date']}",
        "",
        f"Data: {meta['data']}. Set-up and differences: `jaxae.bench.peers.clustpy`.",
        "",
    ]
    pre = result["pretraining"]
    if pre:
        lines += [
            f"## (a) Pretraining d-500-500-2000-10, {pre[0]['n']:,} rows, batch 256",
            "",
            "| implementation | s/epoch | ms/step | epochs x rounds | final loss "
            "| ratio [min, max] | ratio of medians |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in pre:
            lines.append(
                f"| {r['implementation']} | {r['seconds_per_epoch']:.3g} "
                f"| {1e3 * r['seconds_per_step']:.4g} | {r['epochs']} x {r['repeats']} "
                f"| {r['final_loss']:.4f} | {r['ratio_vs_jaxae']:.2f} "
                f"[{r['ratio_min']:.2f}, {r['ratio_max']:.2f}] | {r['ratio_of_medians']:.2f} |"
            )
        lines += [
            "",
            "ratio: ClustPy's time per step over jaxae's in the same round; above 1, jaxae "
            "is faster. jaxae's compilation is apart (compile_seconds in the .json).",
            "",
        ]
    if result["end_to_end"]:
        lines += [
            "## (b) End to end, pixels to labels",
            "",
            "| method | implementation | seconds | ratio vs jaxae | refine steps "
            "| ACC | NMI | ARI |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in result["end_to_end"]:
            ratio = f"{r['ratio_vs_jaxae']:.2f}" if "ratio_vs_jaxae" in r else "-"
            lines.append(
                f"| {r['method']} | {r['implementation']} | {r['seconds']:.1f} | {ratio} "
                f"| {r['refine_steps'] if r['refine_steps'] is not None else '-'} "
                f"| {r['acc']:.3f} | {r['nmi']:.3f} | {r['ari']:.3f} |"
            )
        lines += ["", *(f"- jaxae {k}: {v[1]}" for k, v in JAXAE_RUNS.items()), ""]
        lines += [
            "ClustPy's DEC/IDEC rows score the clustering layer's labels (`dec_labels_`); its "
            "`labels_`, a KMeans of the refined codes, are `kmeans_relabel` in the .json. "
            "jaxae's seconds include compiling its programs (each run starts with none); "
            "umap-learn's numba code was compiled before any run.",
            "",
        ]
    lines += ["## Metadata", ""]
    for k, v in meta.items():
        lines.append(f"- {k}: {json.dumps(v) if isinstance(v, dict | list) else v}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("JAXAE_BENCH_DATA", "../shared/data/mnist-5k"))
    p.add_argument("--n", type=int, default=10_000, help="the first N images (default 10,000)")
    p.add_argument("--epochs", type=int, default=2, help="(a): epochs per timed round")
    p.add_argument("--rounds", type=int, default=3, help="(a): alternated rounds")
    p.add_argument("--pretrain-epochs", type=int, default=50, help="(b): pretraining epochs")
    p.add_argument("--refine-epochs", type=int, default=10, help="(b): DEC/IDEC passes")
    p.add_argument("--n-init", type=int, default=10, help="(b): KMeans / mixture restarts")
    p.add_argument("--methods", default=",".join(METHODS), help="(b): comma-separated, or none")
    p.add_argument("--skip-pretraining", action="store_true", help="leave (a) out")
    p.add_argument("--out", type=Path, help="write OUT.md and OUT.json")
    args = p.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m and m != "none"]
    if unknown := set(methods) - set(METHODS):
        p.error(f"unknown --methods {', '.join(sorted(unknown))}: use {', '.join(METHODS)}")
    if reason := peers.available()["clustpy"]:
        p.error(f"ClustPy cannot run here: {reason}; pip install 'jaxae[peers]'")
    images, labels, where = load_labelled(args.data, args.n)
    if labels is None and methods:
        p.error(f"{args.data} has no labels to score: pass labelled digits or --methods none")
    start = time.perf_counter()
    log = lambda msg: print(f"[{time.perf_counter() - start:6.1f} s] {msg}", flush=True)
    log(f"data: {where}")
    result = dict(metadata=report.metadata(data=where, args=vars(args) | {"out": str(args.out)}))
    result["pretraining"] = [] if args.skip_pretraining else pretraining(
        images, epochs=args.epochs, rounds=args.rounds, log=log
    )  # fmt: skip
    result["end_to_end"] = end_to_end(
        images, labels, methods=methods, pretrain_epochs=args.pretrain_epochs,
        refine_epochs=args.refine_epochs, n_init=args.n_init, log=log,
    )  # fmt: skip
    result["metadata"]["load_average_end"] = list(os.getloadavg())
    result["metadata"]["seconds"] = time.perf_counter() - start
    text = markdown(result)
    print(text)
    if args.out is not None:
        stem = args.out.with_suffix("") if args.out.suffix in (".md", ".json") else args.out
        stem.parent.mkdir(parents=True, exist_ok=True)
        write_json(stem.with_suffix(".json"), result)
        atomic_write(stem.with_suffix(".md"), text.encode())
        print(f"wrote {stem}.md and {stem}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
