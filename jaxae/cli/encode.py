"""``jaxae encode`` and ``jaxae predict``: a trained run applied to images."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from jaxae.cli.flags import add_image_size
from jaxae.cli.run import setup_jax
from jaxae.errors import JaxaeError


def add_args(p: argparse.ArgumentParser, *, what: str = "codes") -> None:
    p.add_argument("run_dir", type=Path, help="a run folder written by jaxae run")
    p.add_argument("input", help="images: a dataset name or path, as for jaxae run --dataset")
    add_image_size(p)
    p.add_argument("--out", type=Path, required=True, help=f"{what} .npy to write")
    p.add_argument("--n", type=int, default=None, help="first N images")
    if what == "codes":
        p.add_argument("--chunk-rows", type=int, default=65536, help="rows per streamed chunk")
    p.add_argument(
        "--compilation-cache", default=os.environ.get("JAXAE_COMPILATION_CACHE"), metavar="DIR",
        help="persistent XLA compilation cache",
    )  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _save(path: Path, array) -> None:
    from jaxae._files import save_npy

    try:
        save_npy(path, array)
    except OSError as e:
        raise JaxaeError(
            f"cannot write --out {path}: {e.strerror or e}; free disk space or pass another --out"
        ) from None


def _check_out(args: argparse.Namespace) -> None:
    from jaxae._files import check_outside_runs, same_file

    check_outside_runs(args.out)
    if same_file(args.input, args.out):
        raise JaxaeError(
            f"--out {args.out} is the input file {args.input}: writing would replace the "
            "images; pass another --out"
        )


def _images(args: argparse.Namespace):
    from jaxae.data import load_dataset

    return load_dataset(args.input, n=args.n, image_size=args.image_size).images


def handle(args: argparse.Namespace) -> int:
    from jaxae._validate import check_int
    from jaxae.rundir import load
    from jaxae.stream import encode_file, is_streamable

    check_int("chunk_rows", args.chunk_rows, minimum=1)  # for every input, streamed or not
    setup_jax(args)
    _check_out(args)
    encoder = load(args.run_dir)
    if is_streamable(args.input):  # .npy, IDX, folders of images: in chunks, bounded memory
        rows, code_dim = encode_file(
            encoder, args.input, args.out, n=args.n, chunk_rows=args.chunk_rows,
            progress=not args.no_progress, image_size=args.image_size,
        )  # fmt: skip
    else:  # folders of IDX files, .npz, digits, mnist: in memory
        codes = encoder.encode(_images(args))
        _save(args.out, codes)
        rows, code_dim = codes.shape
    print(f"wrote {args.out}: codes {rows} x {code_dim} float32")
    return 0


def add_predict_args(p: argparse.ArgumentParser) -> None:
    add_args(p, what="cluster labels")


def handle_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from jaxae.rundir import load

    setup_jax(args)
    _check_out(args)
    model = load(args.run_dir)
    labels = model.predict(_images(args)).astype(np.int64)
    _save(args.out, labels)
    print(f"wrote {args.out}: {len(labels)} cluster labels (int64)")
    return 0
