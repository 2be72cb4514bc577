#!/usr/bin/env python3
"""What a DEC/IDEC refinement does to its clusters, update by update: the study
behind the refinement guard's signals and thresholds (docs/refinement-guard.md).

Pretrains a preset's autoencoders (cached under ``--cache``), starts the
refinement as ``jaxae run`` does, and records at every few target updates the
label-free signals the guard can watch: the cluster shares (largest, smallest,
the effective number of clusters ``exp(entropy)``), the share of labels moved
away from the start, and the loss; beside them, for this study only, the ACC of
the labels at that step, so that a reader sees which signal moves when the
clusters get worse. Writes one JSON of traces.

    python bench/studies/refine_trace.py --preset n2d-da-fast --seeds 0,1,2 \\
        --dataset ../shared/data/fashion-mnist/t10k-images-idx3-ubyte.gz \\
        --max-steps 6000 --out trace.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization
from sklearn.metrics import adjusted_rand_score

from jaxae import cluster, methods
from jaxae.cluster.guard import (
    GUARD_AGREEMENT,
    GUARD_BALANCE,
    GUARD_EMPTY,
    GUARD_MOVED,
    GUARD_SIGNALS,
    effective_clusters,
)
from jaxae.cluster.refine import config_for
from jaxae.data import load_dataset
from jaxae.preprocess import fit_scaling, scale
from jaxae.presets import apply_preset
from jaxae.train import fit


def shares_stats(labels: np.ndarray, k: int) -> dict:
    shares = np.bincount(labels, minlength=k) / len(labels)
    return {
        "max_share": float(shares.max()),
        "min_share": float(shares.min()),
        "effective": effective(shares),
        "shares": shares.round(4).tolist(),
    }


def agreement(labels: np.ndarray, m: int) -> float:
    """Mean adjusted Rand index of model ``m``'s labels with the other models' (no
    ground truth: how far the seeds agree, as the consensus measures it)."""
    others = [adjusted_rand_score(labels[m], labels[j]) for j in range(len(labels)) if j != m]
    return float(np.mean(others)) if others else 1.0


def effective(shares: np.ndarray) -> float:
    """The guard's effective number of clusters of ``(K,)`` shares."""
    return float(effective_clusters(jnp.asarray(shares, jnp.float32)))


def replay(paths: list[str], balance: float, empty: float, moved: float, agreement: float) -> str:
    """A markdown table: where the guard's rule, with these thresholds, fires on the
    recorded traces (the signals as ``jaxae.cluster.guard`` computes them, from the
    recorded shares, moved labels and agreement), and the ACC it keeps or gives up.

    ``disagree`` is replayed from the mean of the models' recorded agreements (each
    model's mean adjusted Rand index with the others, so their mean is the mean over
    pairs), against the first record after step 0; a model stopped earlier by its
    own signal counts there with its refined labels, not its start as in the
    guard, so the replay fires no later than it."""
    lines = [
        "| trace | seed | start ACC | last ACC (step) | fires at step (signal) | ACC then "
        "| least effective clusters - start | least share kept | most moved |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for path in paths:
        d = json.loads(Path(path).read_text())
        name = (
            f"{Path(d['dataset']).resolve().parent.name} {d['method']} from {d['refine']['start']}"
        )
        apart = {}  # step -> whether the seeds' mean agreement fell too far
        if len(d["traces"]) > 1 and "agreement" in d["traces"][0][0]:
            means = np.mean([[r["agreement"] for r in t] for t in d["traces"]], axis=0)
            steps = [r["step"] for r in d["traces"][0]]
            # The guard's reference is the agreement after the first update (step 0),
            # which a trace does not record: its first record after step 0 stands in.
            apart = {st: bool(a < means[1] - agreement) for st, a in zip(steps, means, strict=True)}
        for m, trace in enumerate(d["traces"]):
            start = np.array(d["start"][m]["shares"])
            e0 = effective(start)
            fire, worst = None, [np.inf, np.inf, 0.0]
            for r in trace[1:]:
                shares = np.array(r["shares"])
                drop = effective(shares) - e0
                kept = float(np.min(shares[start > 0] / start[start > 0]))
                worst = [min(worst[0], drop), min(worst[1], kept), max(worst[2], r["moved"])]
                fired = [drop < -balance, kept < empty, r["moved"] > moved]
                fired.append(apart.get(r["step"], False))
                if fire is None and any(fired):
                    fire = (r["step"], GUARD_SIGNALS[fired.index(True)], r.get("acc"))
            last = trace[-1]
            when = "quiet" if fire is None else f"{fire[0]} ({fire[1]})"
            then = "" if fire is None else f"{fire[2]:.3f}"
            lines.append(
                f"| {name} | {d['seeds'][m]} | {d['start'][m]['acc']:.3f} | "
                f"{last['acc']:.3f} ({last['step']}) | {when} | {then} | {worst[0]:+.2f} | "
                f"{worst[1]:.2f} | {worst[2]:.3f} |"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--replay", nargs="+", default=None, help="trace JSONs: print the guard table")
    p.add_argument("--balance", type=float, default=GUARD_BALANCE)
    p.add_argument("--empty", type=float, default=GUARD_EMPTY)
    p.add_argument("--moved", type=float, default=GUARD_MOVED)
    p.add_argument("--agreement", type=float, default=GUARD_AGREEMENT)
    p.add_argument("--dataset", help="the images to refine on (required without --replay)")
    p.add_argument("--preset", default="n2d-da-fast")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--method", default=None, help="refine with this method instead")
    p.add_argument("--start", default=None, help="start from kmeans or umap-gmm instead")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--max-steps", type=int, default=6000)
    p.add_argument("--every", type=int, default=150, help="steps between records")
    p.add_argument("--cache", default="/tmp/jaxae-trace-cache")
    p.add_argument("--out", help="the trace JSON to write (required without --replay)")
    p.add_argument("--labels", default=None, help="also save every record's labels (.npz)")
    args = p.parse_args(argv)
    if args.replay:
        print(replay(args.replay, args.balance, args.empty, args.moved, args.agreement))
        return 0
    seeds = [int(s) for s in args.seeds.split(",")]

    ds = load_dataset(args.dataset)
    train = {"epochs": args.epochs} if args.epochs else {}
    # The guard off: the study records the whole refinement, and replays the guard on it.
    clusterd = {"refine": {"max_steps": args.max_steps, "guard": False}}
    if args.method:
        clusterd["method"] = args.method
    if args.start:
        clusterd["refine"]["start"] = args.start
    model, train, ccfg = apply_preset(
        args.preset, train=train, cluster=clusterd, input_dim=ds.images.shape[1]
    )
    model = dataclasses.replace(model, image_shape=tuple(ds.image_shape))
    model = fit_scaling(model, ds.images)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    where = Path(args.dataset).resolve()
    name = f"{where.parent.name}-{where.name}-{args.preset}-e{train.epochs}-s{args.seeds}.msgpack"
    t0 = time.perf_counter()
    if (cache / name).is_file():
        result = fit(ds.images[:256], model_config=model,
                     train_config=dataclasses.replace(train, epochs=1, batch_size=256),
                     seeds=seeds, progress=False, keep_model_axis=True)  # fmt: skip
        params = serialization.from_bytes(result.state.params, (cache / name).read_bytes())
    else:
        result = fit(ds.images, model_config=model, train_config=train, seeds=seeds,
                     keep_model_axis=True)  # fmt: skip
        params = result.state.params
        (cache / name).write_bytes(serialization.to_bytes(params))
    pre_seconds = time.perf_counter() - t0

    x = scale(ds.images, model.scaling, model.data_range)
    config = config_for(ccfg, len(ds.images), model.image_shape)
    t0 = time.perf_counter()
    initial = cluster.init_refinement(
        params, x, model_config=model, config=config, seeds=seeds,
        start=methods._start(ccfg, None, None),
    )  # fmt: skip
    start_seconds = time.perf_counter() - t0
    start_labels = np.asarray(initial.labels)
    k = ccfg.clusters
    traces = [[] for _ in seeds]
    kept = []

    def record(done, state):
        labels = np.asarray(state.labels)
        kept.append(labels.astype(np.uint8))
        for m in range(len(seeds)):
            row = {"step": int(state.step[m]), "loss": float(state.loss[m]),
                   "moved": float(np.mean(labels[m] != start_labels[m])),
                   "agreement": agreement(labels, m),
                   "delta": float(state.delta[m]), "converged": bool(state.converged[m]),
                   **shares_stats(labels[m], k)}  # fmt: skip
            if ds.labels is not None:
                row["acc"] = cluster.scores(ds.labels, labels[m])["acc"]
            traces[m].append(row)

    record(0, jax.device_get(initial))
    t0 = time.perf_counter()
    result = cluster.refine(
        x, params, model_config=model, config=config, seeds=seeds,
        initial=initial, steps_per_chunk=args.every, on_chunk=record,
    )  # fmt: skip
    refine_seconds = time.perf_counter() - t0
    out = {
        "dataset": args.dataset, "preset": args.preset, "method": ccfg.method,
        "seeds": seeds, "epochs": train.epochs, "max_steps": args.max_steps,
        "refine": dataclasses.asdict(ccfg.refine),
        "seconds": {"pretraining": pre_seconds, "start": start_seconds,
                    "refinement": refine_seconds},
        "start": [dict(shares_stats(s, k), **({"acc": cluster.scores(ds.labels, s)["acc"]}
                  if ds.labels is not None else {})) for s in start_labels],
        "final_acc": [cluster.scores(ds.labels, lab)["acc"] for lab in result.labels]
        if ds.labels is not None else None,
        "traces": traces,
    }  # fmt: skip
    Path(args.out).write_text(json.dumps(out))
    if args.labels:
        steps = np.asarray([r["step"] for r in traces[0]])
        np.savez_compressed(args.labels, labels=np.stack(kept), steps=steps)
    for m, seed in enumerate(seeds):
        t = traces[m]
        rows = [
            f"[{r['step']}: acc {r.get('acc', 0):.3f} eff {r['effective']:.2f} "
            f"max {r['max_share']:.3f} min {r['min_share']:.3f} moved {r['moved']:.3f}]"
            for r in t[:: max(1, len(t) // 12)]
        ]
        print(f"seed {seed}: start acc {out['start'][m].get('acc')} -> " + " ".join(rows))
    print(json.dumps(out["seconds"]), out["final_acc"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
