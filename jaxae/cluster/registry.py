"""What a clustering method is to the rest of jaxae: one record per method.

Each method's module defines its :class:`Method`; ``jaxae.cluster.METHODS`` lists
them by name, and nothing else names a method: the experiment fits through the
record, the run folder saves what ``arrays()`` gives under the method's name in
one file, ``jaxae.load`` restores it with ``load``, and the CLI's choices and
labels come from the list (the CLI keeps a literal copy for its start-up speed, which
a test holds equal). Adding a method is its module plus one line there, and its
name in ``jaxae.cluster_options.METHOD_NAMES`` (what ``ClusterConfig`` accepts).
A method with options of its own defines them as a frozen dataclass in
:mod:`jaxae.cluster_options` (as ``KMeansOptions``, ``UMAPOptions``,
``RefineOptions`` are), names it in its ``OPTION_SECTIONS`` with a field of
``ClusterConfig``, and maps its flags in ``jaxae.cli.run.PRESET_FIELDS``.

A fitted method (what ``fit`` returns) has ``labels`` (N,), ``predict(codes)``
and ``arrays()``: plain arrays for ``np.savez``, never pickled. One that predicts
on the device may also offer ``labels_program() -> (labels, arrays)``, a
hashable pure ``labels(arrays, codes)`` (umap-gmm's JAX backend) whose label of a
row depends on that row alone: ``Encoder.predict`` then compiles the encoder and
it as one program per size bucket.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np


class Fitted(Protocol):
    labels: np.ndarray

    def predict(self, features: np.ndarray) -> np.ndarray: ...

    def arrays(self) -> dict[str, np.ndarray]: ...


@dataclasses.dataclass(frozen=True)
class Method:
    """One clustering method.

    Attributes:
      name: as ``--method`` and ``ClusterConfig.method`` spell it.
      label: as reports print it (``"UMAP + GMM"``).
      fit: ``fit(features, cluster_config, *, devices=None, should_stop=None,
        progress=False) -> Fitted`` on one model's (N, F) codes; ``devices`` is the
        run's (``ExperimentConfig.devices``), for a method that computes on a mesh
        (umap-gmm's JAX UMAP); the others ignore it. ``should_stop`` is polled every
        couple of seconds of the fit's compiled loops (``jaxae.loop.drive``), which
        raise ``jaxae.loop.Stopped`` when it says so; ``progress`` shows their bars.
        None for a method that refines the encoder (``refines_encoder``), which
        ``jaxae.methods`` fits over all models at once.
      load: ``load(arrays) -> Fitted`` from what ``arrays()`` saved; None when
        the fitted method cannot be saved without pickle (it then says why). A
        fit whose ``arrays()`` returns None (umap-learn's UMAP) is not saved either.
      pixel_baseline: the report scores the method on the pixels too (KMeans on
        the pixels is always scored).
      refines_encoder: DEC and IDEC: the encoder itself is refined with the centres.
      check: ``check(cluster_config, n)`` before training, on ``n`` images: raises
        ``JaxaeError`` when something the method needs is missing (an optional
        package) or its options do not fit the data.
      save_with: the fix :meth:`unsaved` offers before "predict in the process
        that fitted it" (``"fit with --umap jax, or predict"``).
    """

    name: str
    label: str
    fit: Callable[[np.ndarray, Any], Fitted] | None
    load: Callable[[dict[str, np.ndarray]], Fitted] | None
    pixel_baseline: bool = False
    refines_encoder: bool = False
    check: Callable[[Any, int], None] | None = None
    save_with: str = ""

    def unsaved(self) -> str:
        """Why a run folder of a method that cannot be saved does not predict."""
        return (
            f"a {self.name} run folder keeps nothing to predict with: its fitted {self.label} "
            f"cannot be saved without pickle; {self.save_with or 'predict'} in the process "
            "that fitted it (jaxae.AutoEncoderClusterer, or the Experiment's encoder)"
        )
