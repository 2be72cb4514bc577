"""A run folder's fitted clustering: ``clusterer.npz``, written with its SHA-256 recorded.

``jaxae run`` saves the run's fitted method (its registry entry's ``arrays()``, with
the method's name; for several models' codes side by side, also which models and
how each one's codes were centred and scaled: ``jaxae.consensus.SideBySideFit``) as
``clusterer.npz``; the SHA-256 of the
file's bytes goes into the final checkpoint's run settings (``run["clusterer_sha256"]``,
None where the fit could not be saved), which the checkpoint's own SHA-256 covers.
Reading it back (:class:`SavedClusters`, only when something predicts: encoding never
opens it) checks, each failure one line naming the file and the fix:

- the file is there where the run saved one, and is an ``.npz`` (not truncated or
  corrupted) of the run's method (DEC/IDEC: or the start its guard kept);
- its SHA-256 is the recorded one, so any change since the run is refused;
- every floating array is finite;
- the method's own ``load`` accepts the arrays.

A folder written before the SHA-256 was recorded (no ``clusterer_sha256``) still
loads, without that check, or from ``centers.npy`` / ``mixture.npz`` of runs older
still; its arrays are then also tried on one row of zeros of the codes' width, so
arrays of another shape are refused here rather than in the middle of a predict.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

import numpy as np

from jaxae._files import npz_bytes, sha256
from jaxae.cluster import METHODS
from jaxae.consensus import SideBySideFit
from jaxae.errors import JaxaeError
from jaxae.methods import Clustering

CLUSTERER = "clusterer.npz"  # its fitted method as arrays, with the method's name
OLD_CLUSTERERS = ("centers.npy", "mixture.npz")  # what runs before clusterer.npz kept
DIGEST = "clusterer_sha256"  # the key of the run settings that records its SHA-256
_FIX = "restore the run's own copy, or train again with jaxae run"


def clusterer_bytes(clustering: Clustering) -> bytes | None:
    """``clusterer.npz``'s bytes for a fitted clustering; None where it cannot be saved
    (a method without ``load``, or a fit whose ``arrays()`` is None: umap-learn's)."""
    if METHODS[clustering.method].load is None:
        return None
    arrays = clustering.fitted.arrays()
    if arrays is None:
        return None
    return npz_bytes(method=np.asarray(clustering.method), **arrays)


def digest(data: bytes | None) -> str | None:
    """What the run settings record for ``clusterer_bytes``' result."""
    return None if data is None else sha256(data)


class SavedClusters:
    """A run folder's clustering, read from it the first time it is used.

    Stands in for the :class:`jaxae.methods.Clustering` it reads (``method``,
    ``fitted``, ``predict``), so an encoder that only encodes never opens
    ``clusterer.npz``, and a damaged one fails the predict, in one line.

    Args:
      folder: the run folder.
      run: the checkpoint's run settings (``cluster``, and ``clusterer_sha256``).
      code_dim: the width of one model's codes.
      finished: whether the run wrote its report (a folder without a clusterer is then
        one whose fit could not be saved, not one that has not got that far).
      models: how many models the run trained (a clusterer of several models' codes
        side by side names some of them).
    """

    def __init__(self, folder: Path, run: dict, *, code_dim: int, finished: bool, models: int = 1):
        self._args = (Path(folder), run, code_dim, finished, models)

    @functools.cached_property
    def _clustering(self) -> Clustering:
        return read_clusters(*self._args)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # not a Clustering's: no read for copy's or pickle's probes
            raise AttributeError(name)
        return getattr(self._clustering, name)


def read_clusters(
    folder: Path, run: dict, code_dim: int, finished: bool, models: int = 1
) -> Clustering:
    """The run's fitted method, restored through its registry entry (the module docstring
    lists the checks). A DEC/IDEC run whose guard kept the start saved the start's
    method (its ``refine.start``) instead of its own."""
    none = np.zeros(0, np.int64)
    cluster = run["cluster"]
    method = cluster["method"]
    entry = METHODS.get(method)
    if entry is None:
        raise JaxaeError(f"{folder} was clustered by {method!r}, which this jaxae does not know")
    allowed = [method]
    if entry.refines_encoder:
        allowed.append((cluster.get("refine") or {}).get("start", "kmeans"))
    path = folder / CLUSTERER
    recorded = run.get(DIGEST, False)  # False: written before the SHA-256 was recorded
    if recorded is None:  # the run could not save its fit
        return Clustering(method, none, missing=entry.unsaved())
    if recorded is not False or path.is_file():
        data = _read(path)
        arrays = _arrays(path, data)
        if "method" not in arrays:
            raise JaxaeError(f"{path} names no clustering method: it is not jaxae's; {_FIX}")
        saved = str(arrays.pop("method"))
        if saved not in allowed:
            raise JaxaeError(
                f"{path} holds a {saved} fit, but {folder} was clustered with {method}: it "
                f"is another run's or not jaxae's; {_FIX}"
            )
        if recorded is not False and sha256(data) != recorded:
            raise JaxaeError(
                f"{path} is damaged (its SHA-256 is not the one the run recorded in its "
                f"checkpoint): {_FIX}"
            )
        entry = METHODS[saved]
    elif (folder / OLD_CLUSTERERS[0]).is_file():
        path = folder / OLD_CLUSTERERS[0]
        arrays = {"centers": _arrays(path, _read(path)).get("", np.zeros(0))}
    elif (folder / OLD_CLUSTERERS[1]).is_file():
        path = folder / OLD_CLUSTERERS[1]
        arrays = _arrays(path, _read(path))
    elif entry.load is not None and finished and not entry.save_with:
        # Its method always saves: the file was there, and is gone.
        raise JaxaeError(f"{path} is missing: {_FIX}")
    elif entry.load is None or finished:
        # Finished without a clusterer: the fit could not be saved (umap-learn's).
        return Clustering(method, none, missing=entry.unsaved())
    else:  # not finished: predict says so
        return Clustering(method, none)
    for name, array in arrays.items():
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            raise JaxaeError(f"{path} holds non-finite values (NaN or inf) in {name}: {_FIX}")
    try:
        arrays, members = SideBySideFit.split(arrays)
        fitted = entry.load(arrays)
        if members is not None:  # several models' codes side by side (jaxae.consensus)
            if members[0].max(initial=-1) >= models or members[0].min(initial=0) < 0:
                raise ValueError(f"models {members[0].tolist()} of a run of {models}")
            if members[1].shape[1] != code_dim:
                raise ValueError(f"codes of width {members[1].shape[1]}, not {code_dim}")
            fitted = SideBySideFit(fitted, *members)
            code_dim *= len(members[0])
        clustering = Clustering(method, none, fitted)
        if recorded is False:  # no SHA-256 vouches for the shapes: try them on the codes
            clustering.predict(np.zeros((1, code_dim), np.float32))
    except (ValueError, KeyError, TypeError, IndexError, JaxaeError) as e:
        raise JaxaeError(f"cannot read the clusters of {folder} ({e}): {_FIX}") from None
    return clustering


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise JaxaeError(f"{path} is missing: {_FIX}") from None
    except OSError as e:
        raise JaxaeError(f"cannot read {path}: {e.strerror or e}; {_FIX}") from None


def _arrays(path: Path, data: bytes) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (or of an ``.npy``, as ``{"": array}``), read in full."""
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return {"": loaded}
        with loaded:
            return dict(loaded)
    except Exception as e:  # zipfile, zlib and numpy raise many types on garbage
        raise JaxaeError(f"{path} is damaged (truncated or corrupted: {e}): {_FIX}") from None
