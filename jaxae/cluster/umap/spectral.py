"""UMAP's start: the graph's spectral embedding, or the features' principal components.

As umap-learn's ``spectral_layout`` (``spectral.py``): eigenvectors 2..C+1 of the
normalised Laplacian (``eigsh``, umap-learn's settings, the trivial eigenvector
deflated: see :func:`_laplacian_eigenvectors`), a graph in pieces laid out piece by
piece around places as umap-learn does (:func:`_spectral`), or the features'
principal components; scaled so the largest coordinate is 10, noise of 1e-4, then
each axis stretched to [0, 10] (:func:`_initial_embedding`).

A connected graph whose eigensolver fails is laid out from PCA (umap-learn falls
back to random); a piece of a graph in several pieces falls back as umap-learn does.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph
import scipy.sparse.linalg
import sklearn.manifold

from jaxae.loop import check_stop

INITS = ("spectral", "pca")


def _initial_embedding(
    features, graph, n_components: int, init: str, rng, should_stop=None
) -> np.ndarray:
    """``(N, C)`` float32 start in ``[0, 10]``: spectral or PCA, scaled as umap-learn;
    ``should_stop`` is polled in the eigensolver (:func:`_laplacian_eigenvectors`)."""
    coords = None
    if init == "spectral":
        coords = _spectral(graph, n_components, features, rng, should_stop)
    if coords is None:
        centred = features.astype(np.float64) - features.mean(axis=0)
        # Principal axes by SVD; the sign of each axis fixed by its largest loading.
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        vt = vt[:n_components]
        signs = np.sign(vt[np.arange(vt.shape[0]), np.argmax(np.abs(vt), axis=1)])
        coords = centred @ (vt * signs[:, None]).T
    coords = (coords * (10.0 / np.abs(coords).max())).astype(np.float32)
    coords = coords + rng.normal(scale=1e-4, size=coords.shape).astype(np.float32)
    low, high = coords.min(axis=0), coords.max(axis=0)
    return (10.0 * (coords - low) / (high - low)).astype(np.float32)


def _spectral(graph, n_components: int, features, rng, should_stop=None) -> np.ndarray | None:
    """umap-learn's spectral start (``spectral_layout``): ``(N, C)`` float64, or
    ``None`` when the eigensolver does not converge on a connected graph.

    A graph in several pieces is laid out as umap-learn's ``multi_component_layout``
    does: each piece gets a place (``_piece_places``), and its own eigenvectors,
    scaled to half the distance to the nearest other place, around it.
    """
    pieces, labels = scipy.sparse.csgraph.connected_components(graph)
    if pieces == 1:
        return _laplacian_eigenvectors(graph, n_components, should_stop)
    places = _piece_places(features, labels, pieces, n_components, rng)
    graph = graph.tocsr()
    coords = np.empty((graph.shape[0], n_components), np.float64)
    for piece in range(pieces):
        rows = np.flatnonzero(labels == piece)
        gaps = np.linalg.norm(places - places[piece], axis=1)
        reach = gaps[gaps > 0.0].min() / 2.0
        if rows.size < 2 * n_components or rows.size <= n_components + 1:
            local = rng.uniform(-reach, reach, size=(rows.size, n_components))
        else:
            local = _laplacian_eigenvectors(graph[rows][:, rows], n_components, should_stop)
            if local is None:  # umap-learn's fallback for a piece
                local = rng.uniform(-10.0, 10.0, size=(rows.size, n_components))
            local = local * (reach / np.abs(local).max())
        coords[rows] = local + places[piece]
    return coords


def _piece_places(features, labels, pieces: int, n_components: int, rng) -> np.ndarray:
    """``(pieces, C)`` centres of a graph's pieces (umap-learn's ``component_layout``):
    up to ``2 C`` pieces on the axes, ``+e_i`` and ``-e_i``; more by a spectral
    embedding of their centroids' affinities ``exp(-d^2)``, scaled by its maximum."""
    if pieces <= 2 * n_components:
        half = -(-pieces // 2)
        base = np.hstack([np.eye(half), np.zeros((half, n_components - half))])
        return np.vstack([base, -base])[:pieces]
    centroids = np.stack(
        [features[labels == piece].astype(np.float64).mean(axis=0) for piece in range(pieces)]
    )
    gaps = np.linalg.norm(centroids[:, None, :] - centroids[None, :, :], axis=2)
    with warnings.catch_warnings():  # far-apart centroids: an affinity graph in pieces
        warnings.simplefilter("ignore")
        places = sklearn.manifold.SpectralEmbedding(
            n_components=n_components,
            affinity="precomputed",
            random_state=int(rng.integers(2**31 - 1)),
        ).fit_transform(np.exp(-(gaps**2)))
    return places / places.max()


def _laplacian_eigenvectors(graph, n_components: int, should_stop=None) -> np.ndarray | None:
    """Eigenvectors 2..C+1 of a connected graph's normalised Laplacian, or ``None``
    when the solver does not converge.

    umap-learn asks ``eigsh`` for the C + 1 smallest eigenpairs and drops the
    smallest, taking it for the trivial one (``sqrt(degree)``, eigenvalue 0). ARPACK
    does not always find that one: on 400 digits, in float64, it returned the next
    five instead, and dropping the smallest lost a real axis. Here the trivial
    vector ``u`` is moved out of the way (``L + 2 u u^T``: eigenvalue 2, the top of
    the spectrum) and ``eigsh``, with umap-learn's settings, asked for the C smallest.
    A graph too small for that many Lanczos vectors is solved densely.
    ``should_stop`` is polled in every product with the Laplacian (ARPACK calls
    back into Python for each), so a stop does not wait for the solver.
    """
    n = graph.shape[0]
    graph = graph.tocsr().astype(np.float64)
    degree = np.sqrt(np.asarray(graph.sum(axis=0)).ravel())
    scale = scipy.sparse.diags(1.0 / degree)
    laplacian = scipy.sparse.identity(n) - scale @ graph @ scale
    trivial = degree / np.linalg.norm(degree)
    k = n_components + 1  # umap-learn's count, for its Lanczos basis size
    lanczos = max(2 * k + 1, int(np.sqrt(n)))
    if lanczos >= n:
        values, vectors = np.linalg.eigh(laplacian.toarray() + 2.0 * np.outer(trivial, trivial))
        return vectors[:, np.argsort(values)[:n_components]]

    def matvec(v):
        check_stop(should_stop, "the UMAP fit stopped in its spectral start")
        return laplacian @ np.ravel(v) + 2.0 * trivial * (trivial @ np.ravel(v))

    deflated = scipy.sparse.linalg.LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    try:
        values, vectors = scipy.sparse.linalg.eigsh(
            deflated,
            n_components,
            which="SM",
            ncv=lanczos,
            tol=1e-4,
            v0=np.ones(n),
            maxiter=n * 5,
        )
    except scipy.sparse.linalg.ArpackError:
        return None
    return vectors[:, np.argsort(values)]
