"""``jaxae refine``: a finished DEC/IDEC run's pretrained models refined again, with other settings.

``jaxae run --resume`` refuses changed flags: a run folder holds one run. This
takes the run's pretrained autoencoders from its checkpoint, starts where the run
started (the same KMeans or UMAP + GMM of the codes, the same seeds) and refines
them with the run's settings changed by the flags, as ``jaxae run`` does
(``jaxae.methods.cluster_models``): with no flag it gives the run's own labels.
Nothing is written into the run folder, nor into any other run's. It prints, and
with ``--out`` writes as markdown (the rows as JSON beside it), per model the
start's and the refined ACC / NMI / ARI, the steps and whether the refinement
converged, then the mean and spread over the models and, for two models or more,
the run's answer: their codes side by side (``jaxae.consensus``). The labels only
score; no choice uses them.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

from jaxae.errors import JaxaeError

# Flags -> fields of ClusterConfig.refine; each is the run's setting unless given.
CHANGES = {
    "update_interval": ("update_interval", int, "steps between updates of the target P"),
    "max_steps": ("max_steps", int, "most refinement steps"),
    "dec_tol": ("tol", float, "stop once fewer than this share of labels changed"),
    "gamma": ("gamma", float, "IDEC's weight of the clustering loss (IDEC runs only)"),
    "lr": ("lr", float, "DEC's SGD learning rate (DEC runs only; IDEC's Adam keeps 0.001)"),
}


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, help="a finished DEC or IDEC run folder")
    for flag, (_, kind, help_) in CHANGES.items():
        p.add_argument("--" + flag.replace("_", "-"), type=kind, default=None, help=help_)
    p.add_argument("--models", default=None, help="comma-separated model indices (all)")
    p.add_argument("--out", type=Path, default=None, help="markdown report to write (and .json)")
    p.add_argument(
        "--compilation-cache", default=os.environ.get("JAXAE_COMPILATION_CACHE"), metavar="DIR",
        help="persistent XLA compilation cache",
    )  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _check_out(out: Path | None) -> None:
    from jaxae._files import check_outside_runs

    if out is None:
        return
    check_outside_runs(out, name="--out")
    if out.suffix != ".md":
        raise JaxaeError(f"--out {out} is not a .md file: pass a .md path (the .json goes beside)")


def _finished_run(run_dir: Path):
    """The run's config and checkpoint, refused unless it is a finished DEC/IDEC run."""
    from jaxae import cluster
    from jaxae.lifecycle import resume_point
    from jaxae.rundir import REPORT

    config, _, ckpt = resume_point(run_dir)
    method = config.cluster.method
    if not cluster.METHODS[method].refines_encoder:
        raise JaxaeError(
            f"{run_dir} clustered with {method}, which refines nothing: pass a run of "
            "--method dec or idec"
        )
    if ckpt.stage == "pretraining" or not (run_dir / REPORT).is_file():
        done = f"epoch {ckpt.epoch} of {config.train.epochs}"
        if ckpt.stage != "pretraining":
            done = f"pretrained, {ckpt.stage} not finished"
        raise JaxaeError(
            f"{run_dir} is not a finished run ({done}): finish it first with "
            f"jaxae run --resume {run_dir}, then refine it"
        )
    return config, ckpt


def _changed(args: argparse.Namespace, cluster_config):
    """The run's ClusterConfig with the flags given; library names become flags."""
    changes = {field: getattr(args, flag) for flag, (field, _, _) in CHANGES.items()}
    changes = {field: value for field, value in changes.items() if value is not None}
    try:
        refine = dataclasses.replace(cluster_config.refine, **changes)
        return dataclasses.replace(cluster_config, refine=refine), changes
    except JaxaeError as e:  # refine.lr has no flag of `jaxae run` for as_flags to find
        raise JaxaeError(str(e).replace("refine.lr=", "lr=").replace("refine.lr", "--lr")) from None


def _models(spec: str | None, count: int) -> list[int]:
    try:
        models = list(range(count)) if spec is None else [int(m) for m in spec.split(",")]
    except ValueError:
        models = []
    if not models or not all(0 <= m < count for m in models):
        raise JaxaeError(f"--models must be comma-separated indices in [0, {count}), e.g. 0,1")
    return models


def handle(args: argparse.Namespace) -> int:
    import jax
    import numpy as np

    from jaxae import methods
    from jaxae.cli.run import setup_jax
    from jaxae.cluster import scores
    from jaxae.consensus import cluster_side_by_side, kept_model
    from jaxae.lifecycle import load_run_data

    setup_jax(args)
    _check_out(args.out)
    config, ckpt = _finished_run(args.run_dir)
    cluster_config, changes = _changed(args, config.cluster)
    config, dataset = load_run_data(args.run_dir, config, ckpt)
    if dataset.labels is None:
        raise JaxaeError(f"{config.data.source} has no labels to score the clusters with")
    models = _models(args.models, len(ckpt.models))
    params = jax.tree.map(lambda a: np.asarray(a)[models], ckpt.state.params)
    seeds = [ckpt.models[m][0] for m in models]

    start = time.perf_counter()
    alive = np.ones(len(models), bool)
    refined, clusterings, _ = methods.cluster_models(
        params, dataset.images, alive=alive,
        model_config=config.model, cluster_config=cluster_config, seeds=seeds,
        progress=not args.no_progress, devices=config.devices,
    )  # fmt: skip
    # The answer a run of these models gives: their final codes side by side, clustered
    # with the seed of the model that agrees most with the others (jaxae.experiment).
    losses = [float(ckpt.loss_history[m, -1]) for m in models]
    kept, _ = kept_model(
        [{"seed": s, "final_loss": v} for s, v in zip(seeds, losses, strict=True)],
        clusterings, config.model.dtype,
    )  # fmt: skip
    together = cluster_side_by_side(
        refined, dataset.images, alive, model_config=config.model,
        cluster_config=cluster_config, seed=seeds[kept], devices=config.devices,
        progress=not args.no_progress,
    )  # fmt: skip
    side_by_side = None if together is None else scores(dataset.labels, together.labels)
    seconds = time.perf_counter() - start
    rows = []
    for m, seed, c in zip(models, seeds, clusterings, strict=True):
        rows.append({"model": m, "seed": seed, "start": scores(dataset.labels, c.before),
                     "refined": scores(dataset.labels, c.labels), **c.details})  # fmt: skip
    text = report(args, config, cluster_config, len(dataset.images), changes, rows, seconds)
    if side_by_side is not None:
        text += (
            f"- the models' codes side by side, the answer of a run of them: ACC "
            f"{side_by_side['acc']:.4f}, NMI {side_by_side['nmi']:.4f}, ARI "
            f"{side_by_side['ari']:.4f}\n"
        )
    print(text, end="")
    if args.out is not None:
        _write(args.out, text, {"changes": changes, "rows": rows, "side_by_side": side_by_side})
        print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0


def report(args, config, cluster_config, n: int, changes: dict, rows: list, seconds: float) -> str:
    """The markdown report: what ran (the refinement as it really ran), then a row per model."""
    import jax
    import numpy as np

    from jaxae.cluster.refine import config_for

    ran = config_for(cluster_config, n, config.model.image_shape)
    optimiser = f"{ {'sgd': 'SGD', 'adam': 'Adam'}[ran.optimizer] } lr {ran.lr:g}" + (
        f" momentum {ran.momentum:g}" if ran.optimizer == "sgd" else ""
    )
    loss = f"KL + reconstruction, gamma {ran.gamma:g}" if ran.method == "idec" else "KL"
    augment = (
        f", batches shifted by up to {ran.augment.shift:g} and turned by up to "
        f"{ran.augment.rotate:g}°" if ran.augment.enabled else ""
    )  # fmt: skip
    flags = [
        f"--{f.replace('_', '-')} {getattr(args, f)}"
        for f in CHANGES
        if getattr(args, f) is not None
    ]
    flags += [] if args.models is None else [f"--models {args.models}"]
    lines = [
        f"# {cluster_config.method} refined again from a run's pretrained models",
        "",
        f"Command: `jaxae refine {args.run_dir}{''.join(' ' + f for f in flags)}`",
        "",
        f"Run: `{args.run_dir}` ({config.data.source}, {n} images); "
        f"changed: {', '.join(f'{k} {v}' for k, v in changes.items()) or 'nothing'}.",
        f"Refinement: {cluster_config.method} ({loss}), {optimiser}, batch {ran.batch_size}, "
        f"update interval {ran.update_interval}, tol {ran.tol:g}, at most {ran.max_iter} "
        f"steps, from {cluster_config.refine.start}{augment}; guard "
        f"{'on' if ran.guard else 'off'}.",
        f"{os.cpu_count()} CPU cores; JAX {jax.__version__}; {jax.devices()[0].device_kind}. "
        f"{seconds:.1f} s for the starts and the refinement.",
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
    for r in rows:
        g = r.get("guard") or {}
        if g.get("fired"):
            lines.append(
                f"\nModel {r['model']}: the guard stopped the refinement at step {g['step']} "
                f"of {g['budget']} ({g['signal']}) and kept {g['kept']}."
            )
    acc = np.array([r["refined"]["acc"] for r in rows])
    nmi = np.array([r["refined"]["nmi"] for r in rows])
    lines += ["", f"- refined: ACC {acc.mean():.4f} ± {acc.std():.4f} (worst {acc.min():.4f}), "
              f"NMI {nmi.mean():.4f} over {len(rows)} model(s)"]  # fmt: skip
    return "\n".join(lines) + "\n"


def _write(out: Path, text: str, rows: dict) -> None:
    from jaxae._files import atomic_write, write_json

    try:
        atomic_write(out, text.encode())
        write_json(out.with_suffix(".json"), rows)
    except OSError as e:
        raise JaxaeError(
            f"cannot write --out {out}: {e.strerror or e}; free disk space or pass another --out"
        ) from None
