"""N2D's clustering stage, UMAP then a full Gaussian mixture, each backend on the same codes.

``jaxae bench --sections clustering`` times ``fit_umap_gmm`` with the JAX backends
(``umap.backend=jax``, ``gmm.backend=jax``: jaxae's defaults, on the device) beside
umap-learn + scikit-learn's ``GaussianMixture`` (``umap-learn`` seeded, so on one
thread, as jaxae runs it), and, where ClustPy is installed and a peer, ClustPy's
``N2D`` on the same codes (:func:`jaxae.bench.peers.clustpy.n2d_on_codes`). N2D's
options: 10 dimensions, 20 neighbours, min_dist 0, 10 clusters, the best of 10
mixtures.

The codes are made once: PCA-10 of the images scaled to [0, 1] (scikit-learn's PCA,
``random_state=0``), a stand-in for a 10-dimensional autoencoder code that needs no
training. Each backend's first call (compilation: XLA's, or numba's for umap-learn)
is timed apart; then ``repeats`` rounds, each running every backend once in turn,
and each row's ratio is its time over the JAX backends' in the same round (median,
min and max over rounds; above 1, JAX is faster). With labels, each row has the
ACC, NMI and ARI of its first call's clusters (the backends are seeded: every call
gives the same). bench/test_bench_clustering.py times the same functions under
pytest-benchmark.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Sequence

import numpy as np

from jaxae.bench import peers
from jaxae.bench.peers.common import first_line
from jaxae.cluster.scores import scores
from jaxae.cluster.umap_gmm import fit_umap_gmm

CLUSTERS, N_INIT, DIM, NEIGHBORS = 10, 10, 10, 20
JAX = "jax"
REFERENCE = "umap-learn+sklearn"
CLUSTPY = "clustpy-n2d"
BACKENDS = {JAX: ("jax", "jax"), REFERENCE: ("umap-learn", "sklearn")}
DESCRIPTIONS = {
    JAX: "jaxae's JAX UMAP + JAX Gaussian mixture (its defaults)",
    REFERENCE: "umap-learn + scikit-learn's GaussianMixture, through jaxae's fit_umap_gmm",
    CLUSTPY: "ClustPy's N2D (umap-learn + GaussianMixture) with the identity as its network",
}
CODES = "PCA-10 of the images scaled to [0, 1] (scikit-learn PCA, random_state 0)"


def make_codes(images: np.ndarray, *, dim: int = DIM) -> np.ndarray:
    """``(N, dim)`` float32 codes of ``(N, D)`` images: PCA of the images / their maximum."""
    from sklearn.decomposition import PCA

    x = np.asarray(images, np.float32)
    x = x / max(float(x.max()), 1.0)
    return PCA(dim, random_state=0).fit_transform(x).astype(np.float32)


def fit_stage(codes: np.ndarray, name: str, *, seed: int = 0) -> np.ndarray:
    """``(N,)`` labels of the clustering stage on ``codes`` by implementation ``name``."""
    if name == CLUSTPY:
        from jaxae.bench.peers import clustpy

        return clustpy.n2d_on_codes(
            codes, clusters=CLUSTERS, n_init=N_INIT, n_neighbors=NEIGHBORS, seed=seed
        )
    umap_backend, gmm_backend = BACKENDS[name]
    fitted = fit_umap_gmm(
        codes, clusters=CLUSTERS, n_init=N_INIT, seed=seed, n_components=DIM,
        n_neighbors=NEIGHBORS, backend=umap_backend, gmm_backend=gmm_backend,
    )  # fmt: skip
    return fitted.labels


def available(names: Sequence[str]) -> dict[str, str | None]:
    """Each implementation -> None if it runs here, else why not; ClustPy's N2D only
    where ``clustpy`` is among the peers ``names``. Cheap: nothing is imported."""
    umap = None if importlib.util.find_spec("umap") else "umap-learn not installed"
    out = {JAX: None, REFERENCE: umap}
    if "clustpy" in names:
        out[CLUSTPY] = peers.available()["clustpy"] or umap
    return out


def measure(
    codes: np.ndarray,
    labels: np.ndarray | None,
    implementations: Sequence[str],
    *,
    repeats: int,
    log: Callable[[str], None] = lambda msg: None,
) -> tuple[list[dict], dict[str, str]]:
    """Time ``implementations`` (JAX first) on ``codes`` in alternation.

    Returns:
      (rows, failures): a row per implementation that ran, with ``first_call_seconds``,
      every round's ``seconds``, their median, ``ratio_vs_jax`` (median over rounds of
      its time over JAX's in the same round) with ``ratio_min``/``ratio_max``, and
      ``acc``/``nmi``/``ari`` where there are ``labels``; and name -> ``Type: message``
      of each implementation that failed. JAX's failure is raised.
    """
    rows: dict[str, dict] = {}
    failures: dict[str, str] = {}

    def call(name: str) -> tuple[float, np.ndarray] | None:
        start = time.perf_counter()
        try:
            found = fit_stage(codes, name)
        except Exception as e:  # a peer that fails is a note, never a failure
            if name == JAX:
                raise
            failures[name] = first_line(e)
            rows.pop(name, None)
            log(f"clustering {name}: failed, {failures[name]}")
            return None
        return time.perf_counter() - start, found

    for name in implementations:
        done = call(name)
        if done is not None:
            first, found = done
            rows[name] = _row(name, codes, labels, found, first)
            log(f"clustering {name}: first call {first:.1f} s")
    for r in range(repeats):
        for name in implementations:
            done = call(name) if name in rows else None
            if done is not None:
                rows[name]["seconds"].append(done[0])
        cells = ", ".join(f"{name} {row['seconds'][-1]:.2f}" for name, row in rows.items())
        log(f"clustering round {r + 1}: seconds {cells}")
    return add_ratios(list(rows.values())), failures


def _row(name, codes, labels, found, first) -> dict:
    got = {} if labels is None else scores(labels, found)
    return dict(
        section="clustering",
        implementation=name,
        n=len(codes),
        features=codes.shape[1],
        clusters=CLUSTERS,
        n_init=N_INIT,
        neighbors=NEIGHBORS,
        first_call_seconds=first,
        seconds=[],
        **{k: got.get(k) for k in ("acc", "nmi", "ari")},
    )


def add_ratios(rows: list[dict]) -> list[dict]:
    """Sets each row's ``median_seconds``, and ``ratio_vs_jax``, ``ratio_min``,
    ``ratio_max`` over the rounds it and the JAX row both ran (None without them)."""
    base = next((r for r in rows if r["implementation"] == JAX), None)
    for r in rows:
        r["median_seconds"] = float(np.median(r["seconds"])) if r["seconds"] else None
        pairs = zip(r["seconds"], base["seconds"] if base else [])
        ratios = [a / b for a, b in pairs if b > 0]
        if not ratios:
            r.update(ratio_vs_jax=None, ratio_min=None, ratio_max=None)
            continue
        r.update(
            ratio_vs_jax=float(np.median(ratios)),
            ratio_min=float(min(ratios)),
            ratio_max=float(max(ratios)),
        )
    return rows
