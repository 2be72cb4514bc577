"""Shared test data: a small slice of real digits, the mnist-5k sample, and IDX files."""

import gzip
import struct
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxae.checkpoint import save_checkpoint
from jaxae.config import TrainConfig
from jaxae.data import load_dataset
from jaxae.model import build_model
from jaxae.preprocess import standardize

MNIST_5K = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-5k"


def mnist_5k() -> Path:
    if not (MNIST_5K / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST sample not found at {MNIST_5K}")
    return MNIST_5K


# From MNIST_5K/README.md: images per digit 0-9 in the sample.
MNIST_5K_COUNTS = [460, 571, 530, 500, 500, 456, 462, 512, 489, 520]

# IDX dtype codes by NumPy dtype name (byte order aside).
IDX_CODES = {"uint8": 0x08, "int8": 0x09, "int16": 0x0B, "int32": 0x0C, "float32": 0x0D}
IDX_CODES["float64"] = 0x0E


def idx_header(code: int, dims) -> bytes:
    """An IDX header: two zero bytes, the dtype code, the number of dims, big-endian dims."""
    return struct.pack(">HBB", 0, code, len(dims)) + struct.pack(f">{len(dims)}I", *dims)


def idx_bytes(array: np.ndarray, *, code: int | None = None, dims=None) -> bytes:
    """An IDX file's bytes: header (code and dims overridable) then big-endian data."""
    array = np.asarray(array)
    code = IDX_CODES[array.dtype.name] if code is None else code
    dims = array.shape if dims is None else dims
    return idx_header(code, dims) + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, *, compress: bool = False, **kwargs) -> Path:
    """Writes ``array`` as an IDX file at ``path`` (gzip level 1 when ``compress``)."""
    data = idx_bytes(array, **kwargs)
    path.write_bytes(gzip.compress(data, compresslevel=1) if compress else data)
    return path


# `jaxae run` flags for a tiny model that trains in a second on digits.
TINY_MODEL = "--hidden 16 --code-dim 8 --n-init 1 --no-progress".split()
# 512 digits in batches of 64 with the tiny model: runs long enough to signal or kill.
SMALL = ["--n", "512", "--batch-size", "64", *TINY_MODEL]


def run_command(*args) -> list[str]:
    """``jaxae run ARGS`` as a separate process's command line."""
    return [sys.executable, "-m", "jaxae.cli", "run", *args]


def digits(n: int = 256):
    return load_dataset("digits", n=n)


def unlabelled_npz(path: Path, source: str, n: int) -> Path:
    """The first ``n`` images of ``source`` saved at ``path`` as an .npz without labels:
    the same codes, and a run that fits no pixel baselines (it has nothing to score)."""
    ds = load_dataset(source, n=n)
    np.savez(path, x=ds.images.reshape(-1, *ds.image_shape))
    return path


def standardized_digits(n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` digits standardised per image, and their labels."""
    ds = digits(n)
    return np.asarray(standardize(ds.images)), ds.labels


def random_models(model_config, count: int):
    """``count`` untrained autoencoders' parameters with a leading model axis: the
    mechanics of a refinement need no good code, and initialising is cheap."""
    model = build_model(model_config)
    keys = jax.random.split(jax.random.key(0), count)
    return jax.vmap(lambda k: model.init(k, jnp.zeros((1, model_config.input_dim))))(keys)


def save_trained(folder: Path, trained) -> Path:
    """Checkpoint the session's ``trained`` tiny model into ``folder`` (as after 3 epochs)."""
    _, model_config, result = trained
    save_checkpoint(
        folder,
        result.state,
        model_config=model_config,
        train_config=TrainConfig.tiny(),
        loss_history=result.loss_history,
        epoch=3,
    )
    return folder


def with_lr(state, lr: float):
    """``state`` with the learning rate in its optimiser state set to ``lr``."""
    import numpy as np

    opt = state.opt_state
    return state._replace(
        opt_state=opt._replace(hyperparams={**opt.hyperparams, "learning_rate": np.float32(lr)})
    )


class Reached(Exception):
    """``lifecycle.start`` was called: the flags passed every check made before the data."""


def run_until_start(tmp_path: Path, monkeypatch, *argv: str) -> tuple[int | None, str]:
    """(exit status, stderr) of ``jaxae run ARGV`` (into ``tmp_path/out``), stopped where it
    would load the data: None where it got there. Checks that no run folder was made."""
    import contextlib
    import io

    from jaxae import lifecycle
    from jaxae.cli import main

    def start(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(lifecycle, "start", start)
    err, out = io.StringIO(), tmp_path / "out"
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = main(["run", "--no-progress", "--out", str(out), *argv])
        except SystemExit as e:  # argparse: a value that does not parse, or not a choice
            status = e.code
        except Reached:
            status = None
    assert not out.exists(), argv
    return status, err.getvalue()


def rewrite_checkpoint(run_dir, **changes) -> None:
    """Save a run folder's checkpoint again with ``changes`` to its fields (``run``,
    ``epoch``, ``stage``, ``refine``...), as another run, or another version, left it."""
    from jaxae.checkpoint import load_checkpoint

    c = load_checkpoint(run_dir)._replace(**changes)
    save_checkpoint(
        run_dir, c.state, model_config=c.model_config, train_config=c.train_config,
        loss_history=c.loss_history, epoch=c.epoch, models=c.models, chunk=c.chunk,
        selected=c.selected, run=c.run, stage=c.stage, refine=c.refine,
        refine_step=c.refine_step, refine_models=c.refine_models,
    )  # fmt: skip


def without_clusterer_checksum(run_dir) -> None:
    """Rewrite a run folder's checkpoint as runs wrote it before clusterer.npz's SHA-256
    was recorded (no ``clusterer_sha256`` in its run settings)."""
    from jaxae.checkpoint import load_checkpoint
    from jaxae.saved_clusters import DIGEST

    run = load_checkpoint(run_dir).run
    rewrite_checkpoint(run_dir, run={k: v for k, v in run.items() if k != DIGEST})
