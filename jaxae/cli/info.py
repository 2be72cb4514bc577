"""``jaxae info``: the JAX version, backend and devices."""

from __future__ import annotations

import argparse


def add_args(p: argparse.ArgumentParser) -> None:
    pass


def handle(args: argparse.Namespace) -> int:
    import jax

    from jaxae import __version__

    print(f"jaxae {__version__}, jax {jax.__version__}, jaxlib {jax.lib.__version__}")
    print(f"backend: {jax.default_backend()}")
    for d in jax.devices():
        print(f"  {d.id}: {d.device_kind} ({d.platform})")
    return 0
