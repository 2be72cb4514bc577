"""``jaxae run``: flags onto an ``ExperimentConfig``, the experiment, the run folder, a summary."""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

from jaxae.cli.flags import REFINING, add_image_size
from jaxae.errors import JaxaeError
from jaxae.presets import DEFAULT_PRESET, PRESETS, describe

METRIC_NAMES = ("acc", "nmi", "ari")
# Flags that only change how a run is shown or compiled: --resume accepts them.
RESUME_FLAGS = {
    "resume", "no_progress", "compilation_cache", "distributed", "coordinator",
    "num_processes", "process_id", "parser", "handler", "command", "stopped", "argv",
}  # fmt: skip
# Flag -> where in the configs it goes: (config, field), or (config, a method's options,
# field) for ClusterConfig's sections. The fields a preset may set.
PRESET_FIELDS = {
    "hidden": ("model", "hidden"),
    "code_dim": ("model", "code_dim"),
    "code_activation": ("model", "code_activation"),
    "scaling": ("model", "scaling"),
    "init": ("model", "kernel_init"),
    "dtype": ("model", "dtype"),
    "epochs": ("train", "epochs"),
    "batch_size": ("train", "batch_size"),
    "optimizer": ("train", "optimizer"),
    "momentum": ("train", "momentum"),
    "schedule": ("train", "schedule"),
    "shift": ("train", "shift"),
    "rotate": ("train", "rotate"),
    "method": ("cluster", "method"),
    "clusters": ("cluster", "clusters"),
    "n_init": ("cluster", "n_init"),
    "kmeans": ("cluster", "kmeans", "backend"),
    "gmm": ("cluster", "gmm", "backend"),
    "gmm_reg_covar": ("cluster", "gmm", "reg_covar"),
    "umap": ("cluster", "umap", "backend"),
    "update_interval": ("cluster", "refine", "update_interval"),
    "max_steps": ("cluster", "refine", "max_steps"),
    "gamma": ("cluster", "refine", "gamma"),
    "dec_tol": ("cluster", "refine", "tol"),
    "dec_shift": ("cluster", "refine", "shift"),
    "dec_rotate": ("cluster", "refine", "rotate"),
    "dec_start": ("cluster", "refine", "start"),
    "dec_guard": ("cluster", "refine", "guard"),
    "umap_dim": ("cluster", "umap", "dim"),
    "umap_neighbors": ("cluster", "umap", "neighbors"),
    "umap_min_dist": ("cluster", "umap", "min_dist"),
    "umap_epochs": ("cluster", "umap", "epochs"),
}
# A field's name in library messages -> its flag, where the two differ: a method's
# options ("umap.dim" -> --umap-dim) and renamed fields ("kernel_init" -> --init).
OPTION_FLAGS = {
    ".".join(path[1:]): "--" + flag.replace("_", "-")
    for flag, path in PRESET_FIELDS.items()
    if len(path) == 3 or path[-1] != flag
}


# The CLI parses its flags before JAX loads (so Ctrl-C works from the first moment), so
# it cannot import jaxae.config; tests/test_cli.py keeps these lists equal to config's.
CHOICES = {
    "optimizer": ("adam", "sgd"),
    "schedule": ("constant", "cosine"),
    "code_activation": ("relu", "linear"),
    "scaling": ("standardize", "unit"),
    "method": ("kmeans", "gmm", "dec", "idec", "umap-gmm"),
    "kmeans": ("sklearn", "jax"),
    "gmm": ("sklearn", "jax"),
    "umap": ("umap-learn", "jax"),
    "dtype": ("float32", "bfloat16"),
    "dec_start": ("kmeans", "umap-gmm"),
}


def add_args(p: argparse.ArgumentParser) -> None:
    presets = "\n".join(f"  {name}: {describe(name)}" for name in PRESETS)
    p.epilog = f"presets (every flag overrides its preset's value):\n{presets}"
    p.add_argument(
        "--preset", default=DEFAULT_PRESET, choices=tuple(PRESETS),
        help="a named recipe (default seed, the original experiment); listed below",
    )  # fmt: skip
    p.add_argument(
        "--dataset", default="digits",
        help="digits (default, offline), mnist, or a path: IDX, .npz, .npy, a folder of images",
    )  # fmt: skip
    add_image_size(p)
    p.add_argument(
        "--n", type=_count, default=None, help="first N images, or all (default 3000 where more)"
    )
    p.add_argument("--epochs", type=int, default=None, help="default 500 (seed preset)")
    p.add_argument("--batch-size", type=int, default=None, help="default 100")
    p.add_argument("--lr", type=_floats, default=None, help="learning rate, or a grid: 0.01,0.003")
    p.add_argument("--optimizer", choices=CHOICES["optimizer"], default=None)
    p.add_argument("--momentum", type=float, default=None, help="SGD momentum (default 0.9)")
    p.add_argument("--schedule", choices=CHOICES["schedule"], default=None)
    p.add_argument(
        "--shift", type=float, default=None,
        help="augment: move each image by up to this fraction of its size (DEC-DA 0.1)",
    )  # fmt: skip
    p.add_argument(
        "--rotate", type=float, default=None,
        help="augment: turn each image by up to this many degrees (DEC-DA 10)",
    )  # fmt: skip
    p.add_argument("--hidden", type=_ints, default=None, help="hidden widths, e.g. 500,500,2000")
    p.add_argument("--code-dim", type=int, default=None)
    p.add_argument("--code-activation", choices=CHOICES["code_activation"], default=None)
    p.add_argument(
        "--scaling", choices=CHOICES["scaling"], default=None,
        help="standardize each image (seed), or the data's range onto [0, 1] (unit)",
    )  # fmt: skip
    p.add_argument("--init", default=None, help="kernel initialiser, e.g. glorot_uniform")
    p.add_argument(
        "--method", choices=CHOICES["method"], default=None,
        help="how the codes are clustered (default kmeans)",
    )  # fmt: skip
    p.add_argument("--clusters", type=int, default=None)
    p.add_argument("--n-init", type=int, default=None)
    p.add_argument(
        "--kmeans", choices=CHOICES["kmeans"], default=None,
        help="KMeans on the codes: scikit-learn (default) or on the device",
    )  # fmt: skip
    p.add_argument(
        "--gmm", choices=CHOICES["gmm"], default=None,
        help="the Gaussian mixture (gmm, umap-gmm): on the device (default) or scikit-learn",
    )  # fmt: skip
    p.add_argument(
        "--gmm-reg-covar", type=float, default=None,
        help="the mixture's covariance floor (default 1e-6): on the device, in units of the "
        "codes' mean variance; scikit-learn's, in the codes' units",
    )  # fmt: skip
    p.add_argument(
        "--umap", choices=CHOICES["umap"], default=None,
        help="umap-gmm's UMAP: on the device (default; saved: predicts) or umap-learn",
    )  # fmt: skip
    p.add_argument("--update-interval", type=int, default=None, help="DEC: steps per target")
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="DEC: most refinement steps (default: 100 passes over the data)",
    )
    p.add_argument("--gamma", type=float, default=None, help="IDEC: weight of the KL loss")
    p.add_argument("--dec-tol", type=float, default=None, help="DEC: stop below this change")
    p.add_argument(
        "--dec-shift", type=float, default=None,
        help="DEC-DA: refine on batches shifted by up to this share of the size (0.1)",
    )  # fmt: skip
    p.add_argument(
        "--dec-rotate", type=float, default=None,
        help="DEC-DA: refine on batches turned by up to this many degrees (10)",
    )  # fmt: skip
    p.add_argument(
        "--dec-start", choices=CHOICES["dec_start"], default=None,
        help="DEC: start from KMeans on the codes (default) or from UMAP + GMM (N2D's)",
    )  # fmt: skip
    p.add_argument(
        "--dec-guard", action=argparse.BooleanOptionalAction, default=None,
        help="DEC: stop a refinement whose clusters degenerate and keep its start (default on)",
    )  # fmt: skip
    p.add_argument("--umap-dim", type=int, default=None, help="umap-gmm: dimensions (default 10)")
    p.add_argument(
        "--umap-neighbors", type=int, default=None, help="umap-gmm: neighbours (default 20)"
    )
    p.add_argument(
        "--umap-min-dist", type=float, default=None, help="umap-gmm: UMAP's min_dist (default 0)"
    )
    p.add_argument(
        "--umap-epochs", type=int, default=None,
        help="umap-gmm: layout epochs (default umap-learn's: 500 up to 10,000 images, 200 above)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--seeds", type=int, default=1, help="train K models (seeds S..S+K-1) together")
    p.add_argument("--dtype", choices=CHOICES["dtype"], default=None)
    p.add_argument("--devices", default=None, help="data-parallel over N local devices, or all")
    p.add_argument("--out", type=Path, default=None, help="run folder (default: new, under runs/)")
    p.add_argument("--force", action="store_true", help="replace a run already in --out")
    p.add_argument(
        "--resume", type=Path, default=None, metavar="RUN_DIR",
        help="continue an interrupted run from its last checkpoint",
    )  # fmt: skip
    p.add_argument(
        "--checkpoint-every", type=int, default=None, metavar="E",
        help="save the training state every E epochs (default: every 60 s)",
    )  # fmt: skip
    p.add_argument("--data-dir", default=None, help="cache folder for downloads ($JAXAE_DATA)")
    p.add_argument(
        "--compilation-cache", default=os.environ.get("JAXAE_COMPILATION_CACHE"), metavar="DIR",
        help="persistent XLA compilation cache ($JAXAE_COMPILATION_CACHE)",
    )  # fmt: skip
    p.add_argument(
        "--distributed", action="store_true",
        help="multi-process: call jax.distributed.initialize (docs/devices.md)",
    )  # fmt: skip
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


def _count(text: str) -> int | str:
    if text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of images or all: {text!r}") from None


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an integer or comma-separated integers: {text!r}"
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


def experiment_config(args: argparse.Namespace):
    """The ``ExperimentConfig`` the flags describe: the preset, then every flag given;
    a flag the run would ignore is refused (``jaxae.cli.flags``)."""
    from jaxae.cli.flags import check_method_flags
    from jaxae.config import DataConfig, ExperimentConfig
    from jaxae.presets import apply_preset

    fields = {"model": {}, "train": {}, "cluster": {}}
    for flag, (section, *names) in PRESET_FIELDS.items():
        target = fields[section]
        for name in names[:-1]:
            target = target.setdefault(name, {})
        target[names[-1]] = getattr(args, flag)
    fields["train"]["lr"] = None if args.lr is None else args.lr[0]
    model, train, cluster = apply_preset(args.preset, seed=args.seed, **fields)
    check_method_flags(args, cluster)
    source = args.dataset
    if source not in ("digits", "mnist") and Path(source).expanduser().exists():
        source = str(Path(source).expanduser().resolve())  # resumable from any folder
    return ExperimentConfig(
        data=DataConfig(
            source=source, n=args.n, data_dir=args.data_dir, image_size=args.image_size
        ),
        model=model,  # input_dim from the data
        train=train,
        cluster=cluster,
        seeds=args.seeds,
        lrs=None if args.lr is None else tuple(args.lr),
        devices=_devices(args.devices),
        checkpoint_every=args.checkpoint_every,
    )


def _devices(value):
    if value in (None, "all"):
        return value
    try:
        return int(value)
    except ValueError:
        raise JaxaeError(f"--devices takes a number or all, got {value!r}") from None


def _check_resume_flags(args: argparse.Namespace) -> None:
    changed = [
        "--" + dest.replace("_", "-")
        for dest, value in vars(args).items()
        if dest not in RESUME_FLAGS and value != args.parser.get_default(dest)
    ]
    if changed:
        raise JaxaeError(
            f"--resume continues a run exactly as it was configured; {', '.join(changed)} "
            "would change it: drop them, or start a new run with --out"
        )


def handle(args: argparse.Namespace) -> int:
    from jaxae.signals import stop_on_signals

    if getattr(args, "stopped", None) is not None:  # main() took over the signals already
        return _handle(args, args.stopped)
    with stop_on_signals() as stopped:
        return _handle(args, stopped)


def _handle(args: argparse.Namespace, stopped) -> int:
    from jaxae import lifecycle
    from jaxae.cli.flags import check_distributed_flags
    from jaxae.loop import Stopped

    check_distributed_flags(args)
    setup_jax(args)
    progress = not args.no_progress
    try:
        if args.resume is not None:
            _check_resume_flags(args)
            outcome = lifecycle.resume(args.resume, progress=progress, should_stop=stopped)
        else:
            out = args.out or Path("runs") / (
                datetime.datetime.now().strftime("%Y%m%d-%H%M%S-") + Path(args.dataset).name
            )
            outcome = lifecycle.start(
                experiment_config(args), out=out, force=args.force, progress=progress,
                should_stop=stopped, command=_command(args),
            )  # fmt: skip
    except Stopped as e:  # before anything was saved
        print(f"jaxae run: {e}", file=sys.stderr)
        return 130
    if outcome.status == "interrupted":
        print(f"jaxae run: {outcome.message}", file=sys.stderr)
        return 130
    if outcome.status == "already finished":
        print(outcome.message)
    elif _is_main():
        print(summary(outcome.experiment.report.to_dict(), outcome.folder))
    return 0


def _command(args: argparse.Namespace) -> dict | None:
    """The command line that started the run and where, for report.json and index.html."""
    argv = getattr(args, "argv", None)  # set by jaxae.cli.main
    return None if argv is None else {"argv": ["jaxae", *argv], "cwd": os.getcwd()}


def _is_main() -> bool:
    import jax

    return jax.process_index() == 0


def _guard_lines(report: dict) -> list[str]:
    """One line per model whose refinement the guard stopped."""
    lines = []
    for i, m in enumerate(report["models"]):
        g = m.get("guard") or {}
        if g.get("fired"):
            lines.append(
                f"guard: model {i} (seed {m['seed']}) degenerated ({g['signal']}) at step "
                f"{g['step']} of {g['budget']}: the refinement was stopped and {g['kept']} kept"
            )
    return lines


def summary(report: dict, out: Path) -> str:
    """The lines ``jaxae run`` prints: data, training, scores beside the baselines, files."""
    from jaxae.methods import label, method_label

    r = report
    lines = [
        f"{r['dataset']}: {r['n']} x {r['input_dim']}, {r['epochs']} epochs, "
        f"batch {r['batch_size']}, "
        f"{r['dtype']} on {r['backend']} ({r['device_kind']})",
        f"train {r['train_seconds']:.2f} s ({r['steps_per_second']:,.0f} steps/s, "
        f"compile {r['compile_seconds']:.2f} s), final loss {r['final_loss']:.4f}"
        + (f", {r['models_trained']} models together" if r["models_trained"] > 1 else ""),
    ]
    if r["method"] != "kmeans" or r["cluster_seconds"] > 5:
        stages = r.get("stage_seconds", {})
        start = next((k for k in stages if k.endswith("_start")), None)
        split = ""
        if start and "refinement" in stages:
            split = (
                f" ({method_label(start.removesuffix('_start'))} {stages[start]:.1f} s, "
                f"refinement {stages['refinement']:.1f} s)"
            )
        lines.append(
            f"{r['method']} {r['cluster_seconds']:.1f} s{split}, "
            f"baselines {r['baseline_seconds']:.1f} s"
        )
    by_lr = r.get("metrics_by_lr") or ({str(r["lr"]): r["metrics"]} if r["metrics"] else {})
    several = r["models_trained"] > len(by_lr)
    for lr, metrics in by_lr.items():
        if not metrics:
            continue
        head = f"lr {lr}, " if len(by_lr) > 1 else ""
        first = next(iter(metrics))
        if several:
            head += f"mean ± std over seeds {metrics[first]['seeds']}"
        width = 20 if several else 8
        lines.append(
            f"{head or 'clustering':<34}" + "".join(f"{k.upper():>{width}}" for k in METRIC_NAMES)
        )
        for name, m in metrics.items():
            cells = (
                f"{m[k]:.3f} ± {m['std'][k]:.3f}".rjust(20) if several else f"{m[k]:>8.3f}"
                for k in METRIC_NAMES
            )
            lines.append(f"{label(name):<34}" + "".join(cells))
    if by_lr and not several:
        lines.append("one seed is one draw: --seeds 5 trains five at once and shows mean ± std")
    lines += _guard_lines(r)
    refine = r["cluster"].get("refine") or {}
    if r["models_trained"] == 1 and refine.get("guard") and r["cluster"]["method"] in REFINING:
        lines.append(
            "the guard watched one model alone: with --seeds 2 or more it also stops a "
            "refinement whose models drift apart (docs/refinement-guard.md)"
        )
    consensus = r.get("consensus") or {}
    if several and consensus.get("metrics"):
        name = next(iter(consensus["metrics"]))
        acc = consensus["metrics"][name]["acc"]
        if consensus.get("models"):
            lines.append(f"the run's clusters: {consensus['rule']}, ACC {acc:.3f}")
        else:
            lines.append(
                f"kept: model {consensus['model']} (seed {consensus['seed']}), the consensus of "
                f"the {r['models_trained']} clusterings, {label(name)} ACC {acc:.3f}"
            )
    files = ", ".join(p.name for p in sorted(out.glob("*.png")))
    lines.append(f"wrote {out}/ (index.html, report.json, {files}, checkpoint)")
    return "\n".join(lines)
