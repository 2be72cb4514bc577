"""Which of ``jaxae run``'s flags a run reads, and the checks that refuse one it would ignore.

A run clusters the codes with its method (``--method``, or its preset's) and, for DEC
and IDEC, first with the clustering its refinement starts from (``--dec-start``).
``METHOD_FLAGS`` is the one declaration of which methods read each method flag; a
flag given on the command line that none of the run's clusterings reads is refused
before anything is loaded, as a value out of range is, rather than ignored. A
preset's own values are never refused: only flags the user gave count (argparse
leaves the others None).
"""

from __future__ import annotations

import argparse

from jaxae.errors import JaxaeError
from jaxae.presets import DEFAULT_PRESET

REFINING = ("dec", "idec")  # the methods that refine the encoder from a start
UMAP_GMM = ("umap-gmm",)
# Flag (argparse dest) -> the methods that read it. Flags not listed are read by every run.
METHOD_FLAGS = {
    # KMeans on the codes only: DEC's KMeans start and the pixel baseline use scikit-learn.
    "kmeans": ("kmeans",),
    "gmm": ("gmm", *UMAP_GMM),
    "gmm_reg_covar": ("gmm", *UMAP_GMM),
    "umap": UMAP_GMM,
    "umap_dim": UMAP_GMM,
    "umap_neighbors": UMAP_GMM,
    "umap_min_dist": UMAP_GMM,
    "umap_epochs": UMAP_GMM,
    "update_interval": REFINING,
    "max_steps": REFINING,
    "dec_tol": REFINING,
    "dec_shift": REFINING,
    "dec_rotate": REFINING,
    "dec_start": REFINING,
    "dec_guard": REFINING,
    "gamma": ("idec",),  # DEC has no reconstruction term to weigh the KL loss against
}
# A refinement's start (--dec-start) -> the methods whose flags it reads: N2D's start is
# umap-gmm itself; DEC's KMeans start is its own (scikit-learn, --n-init runs).
START_METHODS = {"kmeans": (), "umap-gmm": UMAP_GMM}
# Flags that only jax.distributed.initialize reads, so only with --distributed.
DISTRIBUTED_FLAGS = ("coordinator", "num_processes", "process_id")


def add_image_size(p: argparse.ArgumentParser) -> None:
    """``--image-size H W``: the flag of every command that reads images (run, encode, predict)."""
    p.add_argument(
        "--image-size", type=int, nargs=2, default=None, metavar=("H", "W"),
        help="resize the images of a folder to H x W (needed when their sizes differ)",
    )  # fmt: skip


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def methods_read(method: str, start: str) -> tuple[str, ...]:
    """The methods whose flags a run of ``method`` reads; ``start`` is ``refine.start``."""
    return (method, *START_METHODS[start]) if method in REFINING else (method,)


def check_method_flags(args: argparse.Namespace, cluster_config) -> None:
    """Refuse a method flag given in ``args`` that the run of ``cluster_config`` ignores.

    Raises:
      JaxaeError: naming the flag, the run's method and the fix.
    """
    method, start = cluster_config.method, cluster_config.refine.start
    read = methods_read(method, start)
    for dest, methods in METHOD_FLAGS.items():
        if getattr(args, dest, None) is None or set(methods) & set(read):
            continue
        run = f"this run's {method}"
        if method in REFINING:
            run += f" from a {start} start"
        if args.method is None and args.preset != DEFAULT_PRESET:
            run += f" (--preset {args.preset})"
        fixes = [f"--method {m}" for m in methods]
        if method in REFINING:
            fixes += [
                f"--dec-start {s}" for s, ms in START_METHODS.items() if set(ms) & set(methods)
            ]
        raise JaxaeError(
            f"{_flag(dest)} is read only by {' and '.join(methods)}, not by {run}: "
            f"drop {_flag(dest)}, or pass {' or '.join(fixes)}"
        )


def check_distributed_flags(args: argparse.Namespace) -> None:
    """Refuse --coordinator, --num-processes and --process-id without --distributed
    (nothing would read them), and counts out of range with it."""
    given = [_flag(d) for d in DISTRIBUTED_FLAGS if getattr(args, d, None) is not None]
    if given and not args.distributed:
        raise JaxaeError(
            f"{', '.join(given)} only set up --distributed runs: add --distributed, or drop them"
        )
    if args.num_processes is not None and args.num_processes < 1:
        raise JaxaeError(
            f"--num-processes must be at least 1, got {args.num_processes}: pass the number "
            "of processes of the run"
        )
    if args.process_id is not None:
        top = None if args.num_processes is None else args.num_processes - 1
        if args.process_id < 0 or (top is not None and args.process_id > top):
            bound = "0 or more" if top is None else f"from 0 to {top} (--num-processes - 1)"
            raise JaxaeError(
                f"--process-id must be {bound}, got {args.process_id}: pass this process's index"
            )
