"""The JAX UMAP fit's long steps as loops of :func:`jaxae.loop.drive`, so a stop is seen
within seconds at any size.

:func:`jaxae.cluster.umap.fit.fit_umap` runs its neighbour search and its layout
epochs through here; between its host steps (the fuzzy union, the spectral start)
it calls :func:`check`, and the spectral start's eigensolver polls in every
product with the Laplacian. Each loop's program takes its position as an
argument, so a search or a layout cut into calls is the same as one call, and a
fit that a stop interrupted is fitted again from the start on resume.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxae.cluster.umap.neighbors import _knn_rows
from jaxae.loop import Call, check_stop, drive, polled

StopFn = Callable[[], bool] | None


def check(should_stop: StopFn, where: str) -> None:
    """Raise :class:`jaxae.loop.Stopped` (interrupted) when ``should_stop()`` says so."""
    check_stop(should_stop, f"the UMAP fit stopped {where}")


def neighbours(
    x: jax.Array, k: int, *, rows: int, cols: int, should_stop: StopFn, progress: bool
) -> tuple[jax.Array, jax.Array]:
    """``(N, k)`` int32 neighbours and float32 distances of every row of ``(N, D)``
    ``x`` among the rows, itself first: :func:`jaxae.cluster.umap.neighbors.nearest_neighbors`
    with ``self_first``, one device, in calls of whole blocks of ``rows`` query rows,
    each beside a poll (:func:`jaxae.loop.polled`)."""
    n = x.shape[0]
    blocks = -(-n // rows)
    state = (jnp.zeros((blocks * rows, k), jnp.int32), jnp.zeros((blocks * rows, k), jnp.float32))

    def run(state, first, count):
        search = lambda: _search_blocks(x, *state, first, count, k=k, rows=rows, cols=cols)
        message = f"the UMAP neighbour search stopped in block {first + 1}"
        return polled(lambda: jax.block_until_ready(search()), should_stop, message), None

    (ids, dist), _ = drive(
        run, state, start=0, total=blocks, chunk=blocks, observe=_wait, unit="block",
        what="the UMAP neighbour search", progress=progress, should_stop=should_stop,
    )  # fmt: skip
    return ids[:n], dist[:n]


@functools.partial(jax.jit, static_argnames=("k", "rows", "cols"))
def _search_blocks(x, ids, dist, first, count, *, k: int, rows: int, cols: int):
    """Query blocks ``first .. first + count - 1`` (of ``rows`` rows each, the last
    padded) searched against all of ``x``, written into ``ids`` and ``dist``."""
    padded = jnp.pad(x, ((0, ids.shape[0] - x.shape[0]), (0, 0)))

    def block(i, found):
        start = (first + i) * rows
        queries = jax.lax.dynamic_slice_in_dim(padded, start, rows)
        got = _knn_rows(queries, x, start, k=k, rows=rows, cols=cols, self_first=True)
        return tuple(
            jax.lax.dynamic_update_slice_in_dim(a, b, start, axis=0)
            for a, b in zip(found, got, strict=True)
        )

    return jax.lax.fori_loop(0, count, block, (ids, dist))


def layout(
    program: Callable[[jax.Array, int, int], jax.Array],
    start: jax.Array,
    epochs: int,
    *,
    should_stop: StopFn,
    progress: bool,
) -> jax.Array:
    """``epochs`` layout epochs from ``start``: ``program(y, first, count)`` is
    :func:`jaxae.cluster.umap.layout.layout_epochs` with everything else bound.

    Each call runs beside a poll (:func:`jaxae.loop.polled`), as the search's do:
    the first compiles the program, seconds at 70,000 rows, which no chunk can
    shorten, and a stop need not wait for a call to end (the fit is dropped)."""

    def run(y, first, count):
        message = f"the UMAP layout stopped in epoch {first + 1}"
        call = lambda: jax.block_until_ready(program(y, first, count))
        return polled(call, should_stop, message), None

    y, _ = drive(
        run, start, start=0, total=epochs, chunk=epochs, observe=_wait, unit="epoch",
        what="the UMAP layout", progress=progress, should_stop=should_stop,
    )  # fmt: skip
    return y


def _wait(state, out, first: int, count: int) -> Call:
    return Call(count)  # the call waited for its result (beside a poll)
