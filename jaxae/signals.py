"""Ctrl-C and SIGTERM during a run: a flag the run polls, not an exception anywhere.

Kept free of JAX so the CLI can install it before JAX loads: a KeyboardInterrupt
raised inside JAX's start-up (in a garbage-collection callback, say) is printed
as "Exception ignored" and lost, and the run would go on.
"""

from __future__ import annotations

import contextlib
import signal


@contextlib.contextmanager
def stop_on_signals(*, exiting: bool = False):
    """While active, SIGINT and SIGTERM set a flag instead of killing the process.

    Yields a callable that says whether a signal came. A second signal raises
    ``KeyboardInterrupt`` at once (the training loop returns to Python every
    couple of seconds, so it lands within one device call).

    ``exiting``: for a process that ends when the block does (the ``jaxae``
    command): once a signal came, later ones are ignored from the block's end
    instead of reaching the old handlers, so a repeated Ctrl-C cannot kill the
    process (or raise ``KeyboardInterrupt`` in its teardown) on the way out.
    """
    received = []

    def handler(signum, frame):
        if received:
            raise KeyboardInterrupt
        received.append(signum)

    try:
        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: leave signals alone
        yield lambda: False
        return
    try:
        yield lambda: bool(received)
    finally:
        for s, h in old.items():
            signal.signal(s, signal.SIG_IGN if exiting and received else h)
