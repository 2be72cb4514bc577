#!/usr/bin/env python3
"""How often does the original recipe's autoencoder beat KMeans on the pixels?

`jaxae run --seed S` is one draw: initial weights and shuffles from S, then
KMeans(random_state=S, n_init=3) on the codes against the same KMeans on the
standardised pixels. This script takes many draws, each model trained alone
exactly as `jaxae run --seed S` trains it, and re-clusters every model's codes
with other KMeans seeds to tell clustering noise from training noise. With
--keras-seeds it also runs the original Keras code (Keras' own initialisation
and shuffling; needs tensorflow) on the same images, to check that jaxae
reproduces the recipe rather than a lucky or unlucky variant of it. Its result is
in docs/results-mnist.md (the original recipe and how often it beats the pixels).

    python bench/studies/seed_study.py --dataset ../shared/data/mnist-5k --seeds 10 \\
        --keras-seeds 4 --out bench/results/seed-study

writes seed-study.json (everything), seed-study.md (tables) and seed-study.png.
About 40 s per jaxae seed and 150 s per Keras seed on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from tqdm import tqdm

import jaxae
from jaxae._files import atomic_write, write_json
from jaxae.bench.peers import SEED_RECIPE
from jaxae.bench.peers import keras as keras_peer
from jaxae.figures import save_figure


def kmeans_acc(features, labels, seed: int) -> float:
    clusters = jaxae.kmeans(features, jaxae.ClusterConfig(seed=seed))
    return jaxae.cluster_accuracy(labels, clusters)


def jaxae_codes(images, seed: int, epochs: int) -> tuple[np.ndarray, float]:
    """Codes and final loss of the recipe trained alone from ``seed``."""
    model_config = jaxae.ModelConfig(input_dim=images.shape[1])
    result = jaxae.fit(
        images,
        model_config=model_config,
        train_config=jaxae.TrainConfig(epochs=epochs, seed=seed),
        progress=False,
    )
    codes = jaxae.Encoder(result.state.params, model_config).encode(images)
    return np.asarray(codes), float(result.loss_history[-1])


def keras_codes(images, seed: int, epochs: int) -> tuple[np.ndarray, float]:
    """The original Keras code (jaxae.bench's Keras peer): Keras' Glorot init, Adam(0.01),
    fit(shuffle=True)."""
    keras = keras_peer.import_keras()
    x = np.asarray(jaxae.standardize(images))
    keras.utils.set_random_seed(seed)
    autoencoder, encoder = keras_peer.build_model(SEED_RECIPE, x.shape[1])
    history = autoencoder.fit(
        x, x, batch_size=SEED_RECIPE.batch_size, epochs=epochs, shuffle=True, verbose=0
    )
    codes = encoder.predict(x, batch_size=1000, verbose=0)
    return codes, float(history.history["loss"][-1])


def study(name, train, seeds, images, labels, epochs, kmeans_seeds, pixel_acc) -> list[dict]:
    rows = []
    for seed in tqdm(seeds, desc=name, unit="seed"):
        start = time.perf_counter()
        codes, final_loss = train(images, seed, epochs)
        seconds = time.perf_counter() - start
        rows.append(
            {
                "seed": seed,
                "acc": kmeans_acc(codes, labels, seed),  # what `jaxae run --seed S` reports
                "pixel_acc": pixel_acc(seed),
                "acc_by_kmeans_seed": [kmeans_acc(codes, labels, r) for r in kmeans_seeds],
                "alive_code_units": int((codes.max(axis=0) > 0).sum()),
                "final_loss": final_loss,
                "train_seconds": seconds,
            }
        )
    return rows


def summary(rows: list[dict]) -> dict:
    acc = np.array([r["acc"] for r in rows])
    diff = acc - np.array([r["pixel_acc"] for r in rows])
    return {
        "seeds": len(rows),
        "acc_mean": float(acc.mean()),
        "acc_std": float(acc.std(ddof=1)) if len(rows) > 1 else 0.0,
        "wins": int((diff > 0).sum()),
        "diff_mean": float(diff.mean()),
        "diff_sem": float(diff.std(ddof=1) / np.sqrt(len(rows))) if len(rows) > 1 else 0.0,
    }


def markdown(results: dict) -> str:
    lines = [
        f"# Seed study: {results['dataset']}, first {results['n']} images, "
        f"{results['epochs']} epochs",
        "",
        f"Command: `{results['command']}`; machine: {results['machine']}; "
        f"jax {results['jax_version']}.",
        "",
        f"Pixels + KMeans ACC over KMeans seeds {results['kmeans_seeds'][0]}-"
        f"{results['kmeans_seeds'][-1]}: mean {np.mean(results['pixel_acc']):.3f}, "
        f"min {min(results['pixel_acc']):.3f}, max {max(results['pixel_acc']):.3f}.",
    ]
    for name in ("jaxae", "keras"):
        rows = results.get(name)
        if not rows:
            continue
        s = results[f"{name}_summary"]
        lines += [
            "",
            f"## {name}",
            "",
            "| seed | AE ACC | pixels ACC | AE - pixels | AE ACC, other KMeans seeds | "
            "live code units | final loss |",
            "| ---: | ---: | ---: | ---: | --- | ---: | ---: |",
        ]
        for r in rows:
            others = r["acc_by_kmeans_seed"]
            lines.append(
                f"| {r['seed']} | {r['acc']:.3f} | {r['pixel_acc']:.3f} | "
                f"{r['acc'] - r['pixel_acc']:+.3f} | {min(others):.3f}-{max(others):.3f} "
                f"(mean {np.mean(others):.3f}) | {r['alive_code_units']} | "
                f"{r['final_loss']:.4f} |"
            )
        lines += [
            "",
            f"AE ACC {s['acc_mean']:.3f} ± {s['acc_std']:.3f} (mean ± std); above the pixels "
            f"in {s['wins']} of {s['seeds']} seeds; AE - pixels {s['diff_mean']:+.3f} ± "
            f"{s['diff_sem']:.3f} (mean ± standard error).",
        ]
    return "\n".join(lines) + "\n"


def figure(results: dict, path: Path) -> None:
    fig = Figure(figsize=(7, 3.6), layout="constrained")
    ax = fig.subplots()
    for name, marker, colour, dx in (("jaxae", "o", "C0", -0.12), ("keras", "s", "C2", 0.12)):
        rows = results.get(name) or []
        for r in rows:
            x = r["seed"] + dx
            ax.plot(
                [x] * len(r["acc_by_kmeans_seed"]),
                r["acc_by_kmeans_seed"],
                "_",
                color=colour,
                alpha=0.35,
                markersize=8,
            )
        if rows:
            ax.plot(
                [r["seed"] + dx for r in rows],
                [r["acc"] for r in rows],
                marker,
                color=colour,
                label=f"{name} codes (KMeans seed = seed)",
            )
    seeds = sorted({r["seed"] for name in ("jaxae", "keras") for r in results.get(name) or []})
    ax.plot(
        seeds,
        [results["pixel_acc"][s] for s in seeds],
        "x",
        color="C3",
        label="pixels (KMeans seed = seed)",
    )
    ax.set_xlabel("seed (dashes: the same codes, other KMeans seeds)")
    ax.set_ylabel("ACC")
    ax.set_xticks(seeds)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"Original recipe on {results['dataset']}, one model per seed", fontsize=10)
    save_figure(fig, path, dpi=120)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="../shared/data/mnist-5k")
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--epochs", type=int, default=500)
    p.add_argument("--seeds", type=int, default=10, help="jaxae seeds 0..N-1")
    p.add_argument("--keras-seeds", type=int, default=0, help="original Keras code, seeds 0..K-1")
    p.add_argument("--kmeans-seeds", type=int, default=10, help="re-cluster with seeds 0..R-1")
    p.add_argument("--out", default="seed-study", help="path prefix of the three files")
    args = p.parse_args()
    try:
        data = jaxae.load_dataset(args.dataset, n=args.n)
    except jaxae.JaxaeError as e:
        print(f"seed_study: {e}", file=sys.stderr)
        return 2
    if data.labels is None:
        print(f"seed_study: {args.dataset} has no labels: pass a labelled dataset", file=sys.stderr)
        return 2

    import jax

    kmeans_seeds = list(range(max(args.kmeans_seeds, args.seeds, args.keras_seeds)))
    pixels = np.asarray(jaxae.standardize(data.images))
    pixel_acc = [kmeans_acc(pixels, data.labels, r) for r in kmeans_seeds]
    results = {
        "dataset": args.dataset,
        "n": len(data.images),
        "epochs": args.epochs,
        "command": "python bench/studies/seed_study.py " + " ".join(sys.argv[1:]),
        "machine": f"{jax.default_backend()} ({jax.devices()[0].device_kind}), "
        f"{os.cpu_count()} CPU cores",
        "jax_version": jax.__version__,
        "kmeans_seeds": kmeans_seeds,
        "pixel_acc": pixel_acc,
    }
    args_common = (
        data.images,
        data.labels,
        args.epochs,
        kmeans_seeds[: args.kmeans_seeds],
        pixel_acc.__getitem__,
    )
    for name, train, count in (
        ("jaxae", jaxae_codes, args.seeds),
        ("keras", keras_codes, args.keras_seeds),
    ):
        if count:
            results[name] = study(name, train, range(count), *args_common)
            results[f"{name}_summary"] = summary(results[name])

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out.with_suffix(".json"), results)
    atomic_write(out.with_suffix(".md"), markdown(results).encode())
    figure(results, out.with_suffix(".png"))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
