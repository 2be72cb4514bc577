"""What the bench measures, and how much: sizes per backend, the training cases, their groups.

A group is one (section, dtype, batch): jaxae first, its peers after it, all timed in
alternation by ``harness.measure``; ``run_group`` returns the group's report rows with
their ratios to jaxae. ``jaxae bench`` and bench/'s pytest wrappers both run groups
through ``run_group``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import numpy as np

from jaxae.bench import harness, peers, report
from jaxae.bench.peers.common import DEC_RECIPE, SEED_RECIPE, Recipe, Workload
from jaxae.loop import default_chunk
from jaxae.preprocess import fit_range, scale

JAXAE = peers.JAXAE
JAXAE_1CHUNK = "jaxae-1chunk"  # fit() with the whole run in one chunk (only where that differs)
# Implementations whose whole run is one compiled program: warmed up by one identical run.
WHOLE_RUN = (JAXAE, JAXAE_1CHUNK, "jax-scan", "jax-scan-loss")
TRAIN_SECTIONS = ("recipe", "sweep", "dec")
SECTIONS = ("recipe", "encode", "compile", "clustering", "sweep", "dec")


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much each measurement runs (see ``SIZES``).

    The whole-run implementations (``WHOLE_RUN``) train ``recipe_epochs``, and in
    the sweep enough epochs for ``sweep_min_steps`` steps; the others, slower per
    step, train ``peer_epochs`` and ``sweep_peer_epochs``. Each is timed
    ``*_repeats`` times in alternation with the rest of its group; in the sweep
    only the whole-run ones repeat. Peers run in float32, and in bfloat16 only when
    listed in ``bf16_peers``. ``dec_*``: DEC's and N2D's autoencoder on ``dec_n`` rows.
    ``clustering_*``: UMAP + Gaussian mixture on the codes of the first ``clustering_n``
    images, each backend's first call apart, then ``clustering_repeats`` rounds.
    """

    recipe_n: int = 3000
    recipe_epochs: int = 50
    peer_epochs: int = 20
    recipe_repeats: int = 3
    recipe_dtypes: tuple[str, ...] = ("float32",)
    sweep_n: int = 70_000
    sweep_batches: tuple[int, ...] = (100, 1024, 4096, 16384)
    sweep_dtypes: tuple[str, ...] = ("float32",)
    sweep_min_steps: int = 1
    # 11 rounds of one epoch each: jaxae / jax-scan moved by at most 2% between two runs
    # on 2 cores, where 5 rounds moved it by up to 6% (bench/results/cpu-sweep-*).
    sweep_repeats: int = 11
    sweep_peer_epochs: int = 1
    sweep_peers: tuple[str, ...] = ("jax-python-loop", "jax-scan", "jax-scan-loss", "torch-eager")
    bf16_peers: tuple[str, ...] = ("jax-scan",)
    dec_n: int = 10_000
    dec_epochs: int = 2
    dec_repeats: int = 3
    dec_peers: tuple[str, ...] = ("jax-scan", "torch-eager", "keras", "clustpy")
    clustering_n: int = 5000
    clustering_repeats: int = 3
    encode_ns: tuple[int, ...] = (1, 100, 10_000, 70_000)
    encode_seconds: float = 1.0  # timing budget per encode case
    cache_n: int = 3000

    def rows(self, sections: Sequence[str] = SECTIONS) -> int:
        """Rows of images the largest measurement of ``sections`` needs."""
        needs = {
            "recipe": [self.recipe_n],
            "encode": list(self.encode_ns),
            "compile": [],
            "sweep": [self.sweep_n],
            "dec": [self.dec_n],
            "clustering": [],  # its own images, never tiled (jaxae.bench.clustering)
        }
        return max([1, *(n for section in sections for n in needs[section])])


SIZES = {
    # 2 CPU cores: several minutes; the 70,000-row sweep alone about 4.5 (measured 270 s).
    "cpu": Sizes(),
    # One H100/H200: a few minutes, mostly compilation (each sweep point compiles).
    "gpu": Sizes(
        recipe_epochs=500,
        recipe_dtypes=("float32", "bfloat16"),
        sweep_batches=(100, 1024, 4096, 16384, 65536),
        sweep_dtypes=("float32", "bfloat16"),
        sweep_min_steps=300,
        sweep_peer_epochs=2,
        bf16_peers=("jax-scan", "torch-eager"),
        dec_epochs=20,
        encode_seconds=0.25,
        clustering_n=10_000,
    ),
    "quick": Sizes(
        recipe_n=1000,
        recipe_epochs=5,
        peer_epochs=1,
        recipe_repeats=2,
        sweep_n=2048,
        sweep_batches=(100, 1024),
        sweep_min_steps=10,
        sweep_repeats=2,
        sweep_peers=(),
        bf16_peers=(),
        dec_n=1024,
        dec_epochs=1,
        dec_repeats=2,
        dec_peers=("jax-scan",),
        encode_ns=(1, 100, 10_000),
        encode_seconds=0.1,
        cache_n=1000,
        clustering_n=600,
        clustering_repeats=1,
    ),
    # For tests: seconds, not minutes.
    "tiny": Sizes(
        recipe_n=300,
        recipe_epochs=2,
        peer_epochs=1,
        recipe_repeats=1,
        sweep_n=300,
        sweep_batches=(100,),
        sweep_min_steps=6,
        sweep_repeats=2,
        sweep_peers=("jax-scan",),
        bf16_peers=(),
        dec_n=300,
        dec_epochs=1,
        dec_repeats=1,
        dec_peers=(),
        encode_ns=(1, 100),
        encode_seconds=0.05,
        cache_n=300,
        clustering_n=200,
        clustering_repeats=2,
    ),
}


def sizes_for(mode: str = "full") -> Sizes:
    """``"quick"``, ``"tiny"``, or ``"full"``: the full sizes for this backend (GPU or CPU)."""
    if mode != "full":
        return SIZES[mode]
    return SIZES["gpu" if jax.default_backend() == "gpu" else "cpu"]


class Case(NamedTuple):
    """One implementation in one group: ``name`` trains ``epochs`` per timed run,
    ``repeats`` runs, after ``warmup_epochs`` untimed."""

    section: str
    name: str
    dtype: str
    batch: int
    n: int
    epochs: int
    warmup_epochs: int
    repeats: int = 1
    recipe: Recipe = SEED_RECIPE


def train_cases(
    sizes: Sizes, names: Sequence[str], sections: Sequence[str] = TRAIN_SECTIONS
) -> list[Case]:
    """The training measurements, group by group: (section, dtype, batch).

    Each group starts with jaxae, its peers right after it. ``names`` are the peers
    to include (``peers.PEERS`` keys); jaxae is always in.
    """
    groups = []
    if "recipe" in sections:
        groups += [("recipe", d, 100, sizes.recipe_n, SEED_RECIPE) for d in sizes.recipe_dtypes]
    if "sweep" in sections:
        groups += [
            ("sweep", d, b, sizes.sweep_n, SEED_RECIPE)
            for d, b in itertools.product(sizes.sweep_dtypes, sizes.sweep_batches)
        ]
    if "dec" in sections:
        groups.append(("dec", "float32", DEC_RECIPE.batch_size, sizes.dec_n, DEC_RECIPE))
    cases = []
    for section, dtype, batch, n, recipe in groups:
        steps = n // batch
        if section == "recipe":
            whole, other, repeats = sizes.recipe_epochs, sizes.peer_epochs, sizes.recipe_repeats
            chosen = [p for p in names if p not in peers.LINEAR_CODE_ONLY]
            repeated = set(peers.IMPLEMENTATIONS)
        elif section == "sweep":
            whole, other = max(1, math.ceil(sizes.sweep_min_steps / steps)), sizes.sweep_peer_epochs
            chosen, repeats = [p for p in names if p in sizes.sweep_peers], sizes.sweep_repeats
            repeated = set(WHOLE_RUN)
        else:
            whole = other = sizes.dec_epochs
            chosen, repeats = [p for p in names if p in sizes.dec_peers], sizes.dec_repeats
            repeated = set(peers.IMPLEMENTATIONS)
        group = [JAXAE]
        if default_chunk(whole, steps) < whole:  # fit makes several host calls: time one too
            group.append(JAXAE_1CHUNK)
        group += [p for p in chosen if dtype == "float32" or p in sizes.bf16_peers]
        for name in group:
            epochs = whole if name in WHOLE_RUN else other
            warmup = epochs if name in WHOLE_RUN else 1
            times = repeats if name in repeated else 1
            cases.append(Case(section, name, dtype, batch, n, epochs, warmup, times, recipe))
    return cases


def groups(cases: Sequence[Case]) -> list[list[Case]]:
    """``cases`` cut into their groups, in order."""
    key = lambda c: (c.section, c.dtype, c.batch, c.n)
    return [list(g) for _, g in itertools.groupby(cases, key)]


class Inputs:
    """The raw images, and each (rows, scaling)'s scaled copy, computed once."""

    def __init__(self, images: np.ndarray):
        self.images = images
        self._scaled: dict[tuple[int, str], np.ndarray] = {}

    def scaled(self, n: int, scaling: str) -> np.ndarray:
        if (n, scaling) not in self._scaled:
            images = self.images[:n]
            data_range = fit_range(images) if scaling == "unit" else None  # as fit does
            self._scaled[n, scaling] = np.array(
                jax.jit(scale, static_argnums=(1, 2))(images, scaling, data_range)
            )
        return self._scaled[n, scaling]


def run_group(
    group: Sequence[Case], inputs: Inputs, *, log: Callable[[str], None] = lambda msg: None
) -> tuple[list[dict], dict[str, str]]:
    """Time one group in alternation: (report rows with ratios to jaxae, failures by label).

    jaxae's failure is raised in the recipe and the sweep; a peer's (and in the dec
    section, jaxae's) is returned as a failure.
    """
    first = group[0]
    x = inputs.scaled(first.n, first.recipe.scaling)
    entries = [
        harness.Entry(
            c.name,
            Workload(
                images=inputs.images[: c.n],
                x=x,
                recipe=c.recipe,
                batch_size=c.batch,
                epochs=c.epochs,
                warmup_epochs=c.warmup_epochs,
                dtype=c.dtype,
            ),
            repeats=c.repeats,
        )
        for c in group
    ]
    required = () if first.section == "dec" else (JAXAE, JAXAE_1CHUNK)
    label = f"{first.section} {first.dtype} batch {first.batch}"
    timings, failures = harness.measure(
        entries, required=required, log=lambda msg: log(f"{label}: {msg}")
    )
    flops = first.recipe.flops_per_sample(inputs.images.shape[1])
    epochs = {c.name: c.epochs for c in group}
    rows = [
        report.train_row(
            section=first.section,
            dtype=first.dtype,
            batch=first.batch,
            n=first.n,
            epochs=epochs[t.name],
            timing=t,
            flops=flops,
        )
        for t in timings
    ]
    return harness.add_ratios(rows), {f"{label} {k}": v for k, v in failures.items()}
