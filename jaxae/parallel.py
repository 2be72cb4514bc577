"""Devices: the data-parallel mesh, replication onto it, and copies back to the host."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxae.errors import JaxaeError


def make_mesh(devices: int | str | Sequence[jax.Device] | None) -> Mesh | None:
    """A 1-D ``"data"`` mesh over the first ``devices`` devices ("all": every one).

    None for a single device in a single process.
    """
    if devices is None and jax.process_count() == 1:
        return None
    available = jax.devices()
    if devices is None:  # under jax.distributed: every process's devices
        devices = "all"
    if devices == "all":
        devices = len(available)
    if isinstance(devices, int):
        if not 1 <= devices <= len(available):
            raise JaxaeError(
                f"devices={devices}: JAX sees {len(available)} device(s); "
                f"pass devices=1 to {len(available)} or devices=all"
            )
        devices = available[:devices]
    if len(devices) == 1 and jax.process_count() == 1:
        return None
    return Mesh(np.asarray(devices), ("data",))


def batch_sharding(mesh: Mesh | None) -> NamedSharding | None:
    """Where each batch goes: split over the mesh's ``"data"`` axis."""
    return None if mesh is None else NamedSharding(mesh, PartitionSpec("data"))


def first_device(mesh: Mesh | None) -> jax.Device:
    return jax.devices()[0] if mesh is None else mesh.devices.flat[0]


def to_host(tree: Any) -> Any:
    """Copy a pytree of (possibly replicated, multi-process) arrays to NumPy, once."""

    def get(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            a = a.addressable_data(0)  # replicated: every shard holds it all
        return np.asarray(a)

    return jax.tree.map(get, jax.device_get(tree) if _addressable(tree) else tree)


def _addressable(tree: Any) -> bool:
    return all(
        not isinstance(a, jax.Array) or a.is_fully_addressable for a in jax.tree.leaves(tree)
    )


def replicate(tree: Any, mesh: Mesh | None) -> Any:
    """Put a pytree on the device, or a full copy on every device of ``mesh``."""
    if mesh is None:
        return jax.device_put(tree)
    sharding = NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(
        lambda a: jax.make_array_from_callback(np.shape(a), sharding, lambda i: np.asarray(a)[i]),
        tree,
    )


def add_model_axis(tree: Any) -> Any:
    """Every leaf with a leading model axis of 1, on the host."""
    return jax.tree.map(lambda a: np.asarray(a)[None], tree)


def squeeze_model_axis(tree: Any) -> Any:
    """Every leaf without its leading model axis (the first model)."""
    return jax.tree.map(lambda a: a[0], tree)
