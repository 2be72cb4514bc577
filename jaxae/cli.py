"""The ``jaxae`` command: run, encode, info, bench.

Each subcommand has ``add_args(parser)`` and a handler; ``main(argv)`` returns
the exit status. Bad input (``JaxaeError``) is one line on stderr and status 2.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

from jaxae.errors import JaxaeError

DEFAULT_N = 3000
METRIC_NAMES = ("acc", "nmi", "ari")


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset", default="digits", help="digits (default, offline), mnist, or a path"
    )
    p.add_argument("--n", type=int, default=None, help="first N images (default 3000 where more)")
    p.add_argument("--epochs", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument(
        "--lr", type=_floats, default=[0.01], help="learning rate, or a grid: 0.01,0.003"
    )
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--code-dim", type=int, default=100)
    p.add_argument("--clusters", type=int, default=10)
    p.add_argument("--n-init", type=int, default=3)
    p.add_argument(
        "--kmeans",
        choices=("sklearn", "jax"),
        default="sklearn",
        help="KMeans on the codes: scikit-learn (default) or on the device",
    )
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--seeds", type=int, default=1, help="train K models (seeds S..S+K-1) together")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--devices", default=None, help="data-parallel over N local devices, or all")
    p.add_argument("--out", type=Path, default=None, help="run folder (default: new, under runs/)")
    p.add_argument("--force", action="store_true", help="replace a run already in --out")
    p.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="continue an interrupted run from its last checkpoint",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="E",
        help="save the training state every E epochs (default: every 60 s)",
    )
    p.add_argument("--data-dir", default=None, help="cache folder for downloads ($JAXAE_DATA)")
    p.add_argument(
        "--compilation-cache",
        default=os.environ.get("JAXAE_COMPILATION_CACHE"),
        metavar="DIR",
        help="persistent XLA compilation cache ($JAXAE_COMPILATION_CACHE)",
    )
    p.add_argument(
        "--distributed",
        action="store_true",
        help="multi-process: call jax.distributed.initialize (see README)",
    )
    p.add_argument("--coordinator", default=None, help="with --distributed: HOST:PORT of process 0")
    p.add_argument("--num-processes", type=int, default=None)
    p.add_argument("--process-id", type=int, default=None)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a number or comma-separated numbers: {text!r}"
        ) from None


def setup_jax(args: argparse.Namespace) -> None:
    """Process-wide JAX settings, before anything compiles."""
    import jax

    if args.compilation_cache:
        jax.config.update("jax_compilation_cache_dir", str(args.compilation_cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    if getattr(args, "distributed", False):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        try:
            jax.distributed.initialize(
                coordinator_address=args.coordinator,
                num_processes=args.num_processes,
                process_id=args.process_id,
            )
        except (ValueError, RuntimeError) as e:
            raise JaxaeError(
                f"jax.distributed.initialize failed ({str(e).splitlines()[0]}): pass --coordinator "
                "HOST:PORT --num-processes N --process-id I, or run under SLURM/a TPU pod"
            ) from None


def cmd_run(args: argparse.Namespace) -> int:
    from jaxae.checkpoint import FILENAME, load_checkpoint
    from jaxae.config import ClusterConfig, ModelConfig, TrainConfig
    from jaxae.data import load_dataset
    from jaxae.pipeline import Checkpointer, RunFolder, run_experiment, save_run, stop_on_signals
    from jaxae.train import TrainingStopped, default_chunk

    setup_jax(args)
    resume = {}
    if args.resume is not None:
        ckpt = load_checkpoint(args.resume)
        run = ckpt.run
        model_config, train_config = ckpt.model_config, ckpt.train_config
        seeds = list(dict.fromkeys(seed for seed, _ in ckpt.models))
        lrs = list(dict.fromkeys(lr for _, lr in ckpt.models))
        resume = dict(initial=ckpt.state, start_epoch=ckpt.epoch, history=ckpt.loss_history)
        chunk = ckpt.chunk
        folder = RunFolder(args.resume, resume=True)
    else:
        if args.seeds < 1:
            raise JaxaeError(f"--seeds must be at least 1, got {args.seeds}")
        if 0 <= args.seed < 2**32 < args.seed + args.seeds:  # TrainConfig checks --seed
            raise JaxaeError(
                f"seeds must be between 0 and 2**32-1, but --seed {args.seed} --seeds "
                f"{args.seeds} reaches {args.seed + args.seeds - 1}: pass --seeds "
                f"{2**32 - args.seed} or fewer"
            )
        run = dict(
            dataset=args.dataset,
            n=args.n,
            data_dir=args.data_dir,
            clusters=args.clusters,
            n_init=args.n_init,
            kmeans=args.kmeans,
            devices=args.devices,
        )
        train_config = TrainConfig(
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr[0], seed=args.seed
        )
        seeds, lrs = list(range(args.seed, args.seed + args.seeds)), args.lr
        out = args.out or Path("runs") / (
            datetime.datetime.now().strftime("%Y%m%d-%H%M%S-") + Path(args.dataset).name
        )
        folder = RunFolder(out, force=args.force)
        model_config = None
        chunk = None
    dataset = load_dataset(run["dataset"], n=run["n"], data_dir=run["data_dir"])
    if run["n"] is None and len(dataset.images) > DEFAULT_N:  # the original's mnist.data[:3000]
        dataset = dataset._replace(
            images=dataset.images[:DEFAULT_N],
            labels=None if dataset.labels is None else dataset.labels[:DEFAULT_N],
        )
    if model_config is None:
        model_config = ModelConfig(
            input_dim=dataset.images.shape[1],
            hidden=args.hidden,
            code_dim=args.code_dim,
            dtype=args.dtype,
        )
    cluster_config = ClusterConfig(clusters=run["clusters"], n_init=run["n_init"], seed=seeds[0])
    every = args.checkpoint_every
    if every is not None and every < 1:
        raise JaxaeError(f"--checkpoint-every must be at least 1 epoch, got {every}")
    if chunk is None:
        steps = len(dataset.images) // train_config.batch_size
        chunk = min(default_chunk(train_config.epochs, max(steps, 1)), every or train_config.epochs)
    checkpointer = Checkpointer(
        folder,
        every_epochs=every,
        model_config=model_config,
        train_config=train_config,
        models=[(s, lr) for s in seeds for lr in lrs],
        chunk=chunk,
        run=run,
        saved_epoch=resume.get("start_epoch"),
    )
    with stop_on_signals() as stopped:
        try:
            experiment = run_experiment(
                dataset,
                model_config=model_config,
                train_config=train_config,
                cluster_config=cluster_config,
                seeds=seeds,
                lrs=lrs,
                devices=_devices(run),
                epochs_per_chunk=chunk,
                progress=not args.no_progress,
                on_chunk=checkpointer,
                should_stop=stopped,
                kmeans_backend=run.get("kmeans", "sklearn"),
                **resume,
            )
        except TrainingStopped as e:
            saved = checkpointer.save_latest()
            where = folder.path / FILENAME
            if saved is None:
                raise JaxaeError(f"{e}; no epoch finished, so nothing was saved") from None
            if stopped():
                print(
                    f"jaxae run: {e}; saved epoch {saved} in {where}; "
                    f"resume with: jaxae run --resume {folder.path}",
                    file=sys.stderr,
                )
                return 130
            raise JaxaeError(f"{e}; the last finite state (epoch {saved}) is in {where}") from None
    save_run(experiment, folder, chunk=chunk, run=run)
    if experiment.report and _is_main():
        print(summary(experiment.report, folder.path))
    return 0


def _devices(run: dict):
    value = run.get("devices")
    if value in (None, "all"):
        return value
    try:
        return int(value)
    except ValueError:
        raise JaxaeError(f"--devices takes a number or all, got {value!r}") from None


def _is_main() -> bool:
    import jax

    return jax.process_index() == 0


def summary(report: dict, out: Path) -> str:
    r = report
    lines = [
        f"{r['dataset']}: {r['n']} x {r['input_dim']}, {r['epochs']} epochs, "
        f"batch {r['batch_size']}, "
        f"{r['dtype']} on {r['backend']} ({r['device_kind']})",
        f"train {r['train_seconds']:.2f} s ({r['steps_per_second']:,.0f} steps/s, "
        f"compile {r['compile_seconds']:.2f} s), final loss {r['final_loss']:.4f}"
        + (f", {r['models_trained']} models together" if r["models_trained"] > 1 else ""),
    ]
    by_lr = r.get("metrics_by_lr") or ({str(r["lr"]): r["metrics"]} if r["metrics"] else {})
    several = r["models_trained"] > len(by_lr)
    for lr, metrics in by_lr.items():
        head = f"lr {lr}, " if len(by_lr) > 1 else ""
        if several:
            head += f"mean ± std over seeds {metrics['autoencoder_kmeans']['seeds']}"
        width = 20 if several else 8
        lines.append(
            f"{head or 'clustering':<34}" + "".join(f"{k.upper():>{width}}" for k in METRIC_NAMES)
        )
        for name, label in (
            ("autoencoder_kmeans", "autoencoder + KMeans"),
            ("pixel_kmeans", "pixels + KMeans"),
        ):
            m = metrics[name]
            cells = (
                f"{m[k]:.3f} ± {m['std'][k]:.3f}".rjust(20) if several else f"{m[k]:>8.3f}"
                for k in METRIC_NAMES
            )
            lines.append(f"{label:<34}" + "".join(cells))
    if by_lr and not several:
        lines.append("one seed is one draw: --seeds 5 trains five at once and shows mean ± std")
    lines.append(
        f"wrote {out}/ (report.json, clusters.png, loss.png, reconstructions.png, checkpoint)"
    )
    return "\n".join(lines)


def add_encode_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, help="a run folder written by jaxae run")
    p.add_argument("input", help="images: a dataset name or path, as for jaxae run --dataset")
    p.add_argument("--out", type=Path, required=True, help="codes .npy to write")
    p.add_argument("--n", type=int, default=None, help="first N images")
    p.add_argument("--chunk-rows", type=int, default=65536, help="rows per streamed chunk")
    p.add_argument(
        "--compilation-cache",
        default=os.environ.get("JAXAE_COMPILATION_CACHE"),
        metavar="DIR",
        help="persistent XLA compilation cache",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def cmd_encode(args: argparse.Namespace) -> int:
    from jaxae._files import save_npy
    from jaxae.checkpoint import load
    from jaxae.data import load_dataset
    from jaxae.stream import encode_file, is_streamable

    setup_jax(args)
    encoder = load(args.run_dir)
    if is_streamable(args.input):  # .npy and IDX: in chunks, bounded memory
        rows, code_dim = encode_file(
            encoder, args.input, args.out, n=args.n, chunk_rows=args.chunk_rows,
            progress=not args.no_progress,
        )  # fmt: skip
    else:  # folders of IDX files, .npz, digits, mnist: in memory
        codes = encoder.encode(load_dataset(args.input, n=args.n).images)
        save_npy(args.out, codes)
        rows, code_dim = codes.shape
    print(f"wrote {args.out}: codes {rows} x {code_dim} float32")
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
    "bench": (
        lambda p: _bench().add_args(p),
        lambda args: _bench().main(args),
        "time training and encoding beside the peers; write bench.json/.md/.png",
    ),
}


def _bench():
    from jaxae import bench

    return bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jaxae", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    subparsers = {}
    for name, (add_args, handler, help_) in COMMANDS.items():
        p = subparsers[name] = sub.add_parser(name, help=help_, description=help_)
        add_args(p)
        p.set_defaults(handler=handler)
    args = parser.parse_args(argv)
    # Python 3.11's argparse turns a value of "--" (e.g. --epochs=--) into [].
    empty = [name for name, value in vars(args).items() if isinstance(value, list) and not value]
    if empty:
        flag = "--" + empty[0].replace("_", "-")
        subparsers[args.command].error(f"argument {flag}: expected one argument")
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
