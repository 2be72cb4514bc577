"""Atomic file writes: a temporary file in the same folder, then a rename.

Every writer in jaxae goes through :func:`atomic_path`, so readers see the old
file or the whole new one, never a partial file, and a failed write leaves no
temporary file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from jaxae.errors import JaxaeError

# Marks a folder as a jaxae run's: only that run writes inside it.
RUN_MARKER = ".jaxae-run"


def temporary_name(path: str | os.PathLike) -> Path:
    """The hidden name ``path`` is written under before the rename: ``.NAME.tmp-PID``."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def run_folder_of(path: str | os.PathLike, *, include_self: bool = True) -> Path | None:
    """The jaxae run folder that holds ``path`` (it, or a folder above it), if any.

    ``include_self=False`` looks only above ``path`` (for a run's own folder).
    Links are followed, so a path that reaches a run folder through one is found.
    """
    path = Path(path).expanduser().resolve()
    for folder in [path, *path.parents] if include_self else path.parents:
        if (folder / RUN_MARKER).is_file():
            return folder
    return None


def check_outside_runs(path: str | os.PathLike, *, name: str = "out") -> None:
    """Refuse to write ``path`` where it lies in a jaxae run folder: only that run writes there.

    ``name`` is the parameter (``out``) or flag (``--out``) that gave the path.
    """
    run = run_folder_of(path)
    if run is not None:
        given = f"{name} {path}" if name.startswith("-") else f"{name}={path}"
        raise JaxaeError(
            f"{given} is inside the jaxae run folder {run}, which only its run writes: "
            "pass a path outside it"
        )


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; renamed onto ``path`` when the block ends.

    Write the file under the yielded name (close it, or unmap it, before the
    block ends). On a normal exit the file is synced to disk and renamed onto
    ``path`` in one step; if the block raises, the temporary file is removed
    and ``path`` is left as it was.

    Raises:
      OSError: from the writes, the sync or the rename (the caller turns it into a
        message); it names ``path``, the file the caller knows, not the temporary one.
    """
    path = Path(path)
    tmp = temporary_name(path)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if e.filename is not None and Path(os.fsdecode(e.filename)).name == tmp.name:
            e.filename = str(path)
        raise
    finally:
        # Never let the cleanup hide the error that brought us here: on a read-only
        # file system unlink raises EROFS even for a file that does not exist.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode())


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    atomic_write(path, buf.getvalue())


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Writes a compressed ``.npz`` of ``arrays`` atomically (never pickling)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        # A file object, not a name: np.savez would append ".npz" to the temporary name.
        np.savez_compressed(f, allow_pickle=False, **arrays)


def npz_bytes(**arrays: np.ndarray) -> bytes:
    """A compressed ``.npz`` of ``arrays`` in memory (never pickling), for a file whose
    SHA-256 is recorded before it is written."""
    buf = io.BytesIO()
    np.savez_compressed(buf, allow_pickle=False, **arrays)
    return buf.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name one existing file (also through symlinks or hard links)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # either is missing or unreadable: not the same existing file
        return False
