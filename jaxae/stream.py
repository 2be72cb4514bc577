"""Encoding image files larger than memory, a chunk of rows at a time.

:func:`encode_file` reads rows from a ``.npy`` (memory-mapped), an IDX images
file (raw: memory-mapped; gzip: decompressed a chunk at a time) or a folder of
images (decoded a chunk at a time), encodes each
chunk with :meth:`jaxae.Encoder.encode`, and writes the codes into a
memory-mapped float32 ``.npy`` that replaces the target only once it is
complete. The rows come from :func:`jaxae.data.open_rows`, the readers that
loading uses too.

Memory bound: peak memory (anonymous: NumPy's and XLA's buffers) depends on
the chunk, not on the number of rows. With the default 65,536-row chunk, 784
pixels and 100-value codes it is about 0.5 GB for uint8 pixels (measured on
the CPU backend: 0.52 GB at 1,000,000 rows, against 6 GB for encoding the same
file in memory) and at most about 1.2 GB for float32 pixels. The pages of the
memory-mapped input and output come on top: they count towards the resident
size (RSS) the OS reports, which grows with the file (12.4 GB was seen at
10,000,000 rows), though the OS reclaims them as it needs memory. Per row, with
``D`` pixels of ``b`` bytes each (1 for uint8, 4 for float32) and the default
hidden width 256 and code 100:

- host (NumPy): ``4 * D * b`` bytes: the chunk being encoded, the next one
  (read ahead on a thread), the encoder's padded copy, and the previous padded
  copy, which JAX's CPU backend releases only at the next garbage collection;
  plus ``D`` bytes for the finiteness check of float input. uint8: 206 MB;
  float32: 873 MB.
- encoder (XLA buffers; host memory on the CPU backend, device memory on a
  GPU): ``4 * (D + 256 + 100)`` bytes for standardised pixels, hidden layer and
  codes: 299 MB.

Both scale linearly with ``chunk_rows``: pass a smaller one to lower them.

Example::

    ae = jaxae.load("runs/my-run")
    rows, code_dim = encode_file(ae, "images.npy", "codes.npy")
    codes = np.load("codes.npy", mmap_mode="r")      # (rows, code_dim) float32
"""

from __future__ import annotations

import errno
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from jaxae._files import atomic_path, check_outside_runs, same_file
from jaxae._validate import check_int
from jaxae.data.rows import is_streamable, open_rows
from jaxae.data.source import RowSource, check_n, one_line
from jaxae.encoder import Encoder
from jaxae.errors import JaxaeError

__all__ = ["RowSource", "encode_file", "is_streamable", "open_rows"]

_NO_FALLOCATE = {errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


def encode_file(
    encoder: Encoder,
    input_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    n: int | None = None,
    chunk_rows: int = 65536,
    progress: bool = True,
    image_size: tuple[int, int] | None = None,
) -> tuple[int, int]:
    """Encodes the rows of a ``.npy``, IDX file or folder of images into a ``.npy`` of codes,
    a chunk at a time.

    Memory stays bounded whatever the file's length (see the module
    docstring). Each chunk goes through ``encoder.encode`` as stored when it is
    uint8, int8 or float32 (uint8 sends a quarter of the bytes to the device)
    and as float32 otherwise (bools as 0 and 1). A fixed ``chunk_rows`` means at
    most two compiled programs: full chunks and the last, shorter one. The next
    chunk is read on a background thread while the current one is encoded.

    Args:
      encoder: the trained encoder.
      input_path: a ``.npy`` holding ``(N, D)`` or ``(N, H, W)`` numbers, an
        IDX images file, raw or gzip, or a folder of images; see
        :func:`jaxae.data.open_rows`.
      out_path: the ``.npy`` to write, ``(N, code_dim)`` float32; never the
        input itself. Codes go to a temporary file next to it, renamed to
        ``out_path`` once complete: the target is never half-written, and an
        error leaves no temporary file.
      n: encode only the first ``n`` rows; all when ``None``.
      chunk_rows: rows per chunk; memory grows with it, not with ``N``.
      progress: show a tqdm bar over rows (after 1 s).
      image_size: ``(H, W)`` to resize a folder's images to; refused for files.

    Returns:
      ``(rows, code_dim)``, the shape written.

    Raises:
      JaxaeError: unreadable or malformed input (see
        :func:`jaxae.data.open_rows`), rows of the wrong width, non-finite
        values (the message names the rows), bad ``n`` or ``chunk_rows``, an
        ``out_path`` that is the input file (also through a link), or an output
        that cannot be written.
    """
    chunk_rows = check_int("chunk_rows", chunk_rows, minimum=1)
    if n is not None:
        n = check_int("n", n, minimum=1)
    out_path = Path(out_path)
    check_outside_runs(out_path, name="out_path")
    if same_file(input_path, out_path):
        raise JaxaeError(
            f"out_path={out_path} is the input file {input_path}: the codes would replace "
            "the images; pass another out_path"
        )
    with open_rows(input_path, image_size=image_size) as source:
        rows = _checked_rows(source, encoder, n)
        code_dim = encoder.code_dim
        try:
            with atomic_path(out_path) as tmp:
                out = _open_output(tmp, (rows, code_dim))
                _encode_into(out, source, encoder, rows, chunk_rows, progress=progress)
                if rows == source.n_rows:
                    source.verify_end()
                out.flush()
                del out  # unmapped before the rename
        except OSError as e:
            raise JaxaeError(
                f"cannot write {out_path} ({e.strerror or one_line(e)}): "
                "pass a path in an existing, writable folder with enough free space"
            ) from e
    return rows, code_dim


def _encode_into(
    out: np.ndarray, source: RowSource, encoder: Encoder, rows: int, chunk_rows: int, *,
    progress: bool,
) -> None:  # fmt: skip
    bounds = [(s, min(s + chunk_rows, rows)) for s in range(0, rows, chunk_rows)]
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="jaxae-read") as reader,
        tqdm(
            total=rows,
            unit="row",
            unit_scale=True,
            delay=1,
            disable=not progress,
            desc=f"encoding {source.path.name}",
        ) as bar,
    ):
        pending = reader.submit(_prepared, source, *bounds[0])
        for i, (start, stop) in enumerate(bounds):
            chunk = pending.result()
            if i + 1 < len(bounds):
                pending = reader.submit(_prepared, source, *bounds[i + 1])
            out[start:stop] = encoder.encode(chunk)
            del chunk  # dropped before the next is taken: two chunks in flight at most
            bar.update(stop - start)


def _checked_rows(source: RowSource, encoder: Encoder, n: int | None) -> int:
    expected = encoder.model_config.input_dim
    if source.width != expected:
        raise JaxaeError(
            f"input rows have {source.width} values but this model was trained on {expected}: "
            f"pass images of the training data's size ({source.path})"
        )
    if source.n_rows == 0:
        raise JaxaeError(f"{source.path} has no images: pass a non-empty file")
    return check_n(n, source.n_rows, source.path)


def _prepared(source: RowSource, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` ready for the encoder: uint8, int8 or float32, and finite."""
    chunk = source.read(start, stop)
    if chunk.dtype not in (np.uint8, np.int8, np.float32):
        # Cast on the host: float64 beyond float32's range becomes inf and is caught
        # below, and int64 is not silently wrapped to int32 on the device.
        with np.errstate(over="ignore"):
            chunk = chunk.astype(np.float32)
    if chunk.dtype == np.float32 and not np.isfinite(chunk).all():
        bad = start + np.flatnonzero(~np.isfinite(chunk).all(axis=1))
        raise JaxaeError(
            f"{source.path} has non-finite values (NaN or inf) in {len(bad)} of rows "
            f"{start}-{stop - 1}, first row {bad[0]}: clean the data "
            "(e.g. np.nan_to_num) before encoding it"
        )
    return chunk


def _open_output(tmp: Path, shape: tuple[int, int]) -> np.memmap:
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
    # Reserve the blocks now: on a full disk this fails with ENOSPC, where a sparse
    # file would kill the process with SIGBUS when a mapped page is first written.
    if hasattr(os, "posix_fallocate"):
        with open(tmp, "r+b") as f:
            try:
                os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
            except OSError as e:
                if e.errno not in _NO_FALLOCATE:  # the file system cannot reserve: go on
                    raise
    return out
