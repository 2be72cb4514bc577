"""The ``jaxae`` command: run, encode, info.

Each subcommand has ``add_args(parser)`` and a handler; ``main(argv)`` returns
the exit status. Bad input (``JaxaeError``) is one line on stderr and status 2.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

from jaxae.errors import JaxaeError

DEFAULT_N = 3000


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset", default="digits", help="digits (default, offline), mnist, or a path"
    )
    p.add_argument(
        "--n", type=int, default=None, help="first N images (default 3000 where there are more)"
    )
    p.add_argument("--epochs", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--code-dim", type=int, default=100)
    p.add_argument("--clusters", type=int, default=10)
    p.add_argument("--n-init", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument(
        "--out", type=Path, default=None, help="run folder (default: a new one under runs/)"
    )
    p.add_argument("--force", action="store_true", help="replace a run already in --out")
    p.add_argument(
        "--data-dir", default=None, help="cache folder for downloads (default $JAXAE_DATA)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def cmd_run(args: argparse.Namespace) -> int:
    from jaxae.config import ClusterConfig, ModelConfig, TrainConfig
    from jaxae.data import load_dataset
    from jaxae.pipeline import check_out_dir, run_experiment, save_run

    train_config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed
    )
    cluster_config = ClusterConfig(clusters=args.clusters, n_init=args.n_init, seed=args.seed)
    out = args.out or Path("runs") / (
        datetime.datetime.now().strftime("%Y%m%d-%H%M%S-") + Path(args.dataset).name
    )
    check_out_dir(out, force=args.force)
    dataset = load_dataset(args.dataset, n=args.n, data_dir=args.data_dir)
    if args.n is None and len(dataset.images) > DEFAULT_N:  # the original's mnist.data[:3000]
        dataset = dataset._replace(
            images=dataset.images[:DEFAULT_N],
            labels=None if dataset.labels is None else dataset.labels[:DEFAULT_N],
        )
    model_config = ModelConfig(
        input_dim=dataset.images.shape[1],
        hidden=args.hidden,
        code_dim=args.code_dim,
        dtype=args.dtype,
    )
    experiment = run_experiment(
        dataset,
        model_config=model_config,
        train_config=train_config,
        cluster_config=cluster_config,
        progress=not args.no_progress,
    )
    save_run(experiment, out, force=args.force)
    print(summary(experiment.report, out))
    return 0


def summary(report: dict, out: Path) -> str:
    r = report
    lines = [
        f"{r['dataset']}: {r['n']} x {r['input_dim']}, {r['epochs']} epochs, "
        f"batch {r['batch_size']}, "
        f"{r['dtype']} on {r['backend']} ({r['device_kind']})",
        f"train {r['train_seconds']:.2f} s ({r['steps_per_second']:,.0f} steps/s, "
        f"compile {r['compile_seconds']:.2f} s), final loss {r['final_loss']:.4f}",
    ]
    if r["metrics"]:
        lines.append(f"{'clustering':<22}{'ACC':>7}{'NMI':>7}{'ARI':>7}")
        for name, label in (
            ("autoencoder_kmeans", "autoencoder + KMeans"),
            ("pixel_kmeans", "pixels + KMeans"),
        ):
            m = r["metrics"][name]
            lines.append(f"{label:<22}{m['acc']:>7.3f}{m['nmi']:>7.3f}{m['ari']:>7.3f}")
    lines.append(
        f"wrote {out}/ (report.json, clusters.png, loss.png, reconstructions.png, checkpoint)"
    )
    return "\n".join(lines)


def add_encode_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, help="a run folder written by jaxae run")
    p.add_argument("input", help="images: a dataset name or path, as for jaxae run --dataset")
    p.add_argument("--out", type=Path, required=True, help="codes .npy to write")
    p.add_argument("--n", type=int, default=None, help="first N images")


def cmd_encode(args: argparse.Namespace) -> int:
    from jaxae.checkpoint import load
    from jaxae.data import load_dataset
    from jaxae.io import save_npy

    encoder = load(args.run_dir)
    images = load_dataset(args.input, n=args.n).images
    codes = encoder.encode(images)
    save_npy(args.out, codes)
    print(f"wrote {args.out}: codes {codes.shape[0]} x {codes.shape[1]} float32")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import jax

    from jaxae import __version__

    print(f"jaxae {__version__}, jax {jax.__version__}, jaxlib {jax.lib.__version__}")
    print(f"backend: {jax.default_backend()}")
    for d in jax.devices():
        print(f"  {d.id}: {d.device_kind} ({d.platform})")
    return 0


COMMANDS = {
    "run": (add_run_args, cmd_run, "train, encode, cluster and score; write a run folder"),
    "encode": (add_encode_args, cmd_encode, "encode images with a trained run"),
    "info": (lambda p: None, cmd_info, "JAX version, backend and devices"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jaxae", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (add_args, handler, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        add_args(p)
        p.set_defaults(handler=handler)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except JaxaeError as e:
        print(f"jaxae {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"jaxae {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
