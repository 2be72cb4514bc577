"""One host driver for every compiled loop: pretraining's epochs, DEC and IDEC's steps,
the JAX UMAP's neighbour search and layout epochs, the JAX mixture's EM iterations.

Each algorithm hands :func:`drive` one jitted program that runs ``count`` units
(epochs, steps) from unit ``first``, both traced so no call compiles again, and
an ``observe`` function that reads what a call left on the host. The driver owns
the rest, with one contract for every loop:

- calls of about ``CALL_SECONDS`` each (one unit first, to time it), so a
  Ctrl-C or SIGTERM is seen within seconds however long a chunk is;
- a tqdm bar (after 2 s) named ``what``, with the algorithm's own numbers;
- ``on_chunk(done, state)`` at every ``chunk`` boundary (a checkpoint chance),
  when the loop finishes early, and before a stop;
- ``should_stop()`` polled after every call: True raises ``stop_error`` with
  ``interrupted=True`` after handing the state to ``on_chunk``;
- divergence, as ``observe`` reports it, raises ``stop_error`` without handing
  the diverged state out (the last ``on_chunk`` had the last finite one).

A run cut into calls this way is the same as one call, since the programs take
their position (``first``) as an argument.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
from tqdm.auto import tqdm

from jaxae.config import TrainConfig
from jaxae.errors import JaxaeError

# Seconds one device call may take: how soon a signal is obeyed.
CALL_SECONDS = 2.0


class Stopped(JaxaeError):
    """A loop stopped early after ``done`` units: by a signal (``interrupted``) or divergence."""

    def __init__(self, message: str, *, done: int, interrupted: bool = False):
        super().__init__(message)
        self.done = done
        self.interrupted = interrupted


class Call(NamedTuple):
    """What ``observe`` read of one call.

    Attributes:
      ran: units the call ran (fewer than asked when the loop converged).
      diverged: a message when a loss became non-finite, else None.
      finished: nothing is left to run (every model converged).
      postfix: numbers for the progress bar.
    """

    ran: int
    diverged: str | None = None
    finished: bool = False
    postfix: dict | None = None


def drive(
    run: Callable[[Any, int, int], tuple[Any, Any]],
    state: Any,
    *,
    start: int,
    total: int,
    chunk: int,
    observe: Callable[[Any, Any, int, int], Call],
    unit: str,
    what: str,
    progress: bool = True,
    should_stop: Callable[[], bool] | None = None,
    on_chunk: Callable[[int, Any], None] | None = None,
    stop_error: type[Stopped] = Stopped,
) -> tuple[Any, int]:
    """Run units ``start .. total - 1`` of a compiled loop; returns (state, units done).

    Args:
      run: ``run(state, first, count) -> (state, out)``, the compiled program.
      state: its state (donated to ``run``, so only the returned one is valid).
      start, total: units already done, and of the whole loop.
      chunk: units between checkpoint chances (``on_chunk``).
      observe: ``observe(state, out, first, count) -> Call``; it copies what it
        needs to the host, which also waits for the call to finish.
      unit: what a unit is called ("epoch", "step"), for the bar and messages.
      what: the loop's name in messages ("training", "refinement").
      progress, should_stop, on_chunk, stop_error: see the module docstring.

    Raises:
      ``stop_error``: divergence, or ``should_stop()`` returned True.
    """
    done, per_unit = start, None
    multi_process = jax.process_count() > 1
    bar = dict(total=total, initial=start, desc=what, unit=unit, delay=2, disable=not progress,
               leave=False)  # fmt: skip
    with tqdm(**bar) as bar:
        while done < total:
            boundary = min((done // chunk + 1) * chunk, total)
            count = 1 if per_unit is None else int(CALL_SECONDS / max(per_unit, 1e-9))
            count = max(1, min(count, boundary - done))
            if multi_process:  # every process must make the same calls
                count = boundary - done
            called = time.perf_counter()
            state, out = run(state, done, count)
            call = observe(state, out, done, count)
            per_unit = (time.perf_counter() - called) / max(call.ran, 1)
            if call.diverged is not None:
                raise stop_error(call.diverged, done=done)
            done += call.ran
            bar.set_postfix(call.postfix or {}, refresh=False)
            bar.update(call.ran)
            finished = call.finished or done >= total
            stop = not finished and should_stop is not None and should_stop()
            if on_chunk is not None and (done == boundary or finished or stop):
                on_chunk(done, state)
            if stop:
                message = f"{what} stopped after {unit} {done}"
                raise stop_error(message, done=done, interrupted=True)
            if finished:
                break
    return state, done


def check_stop(should_stop: Callable[[], bool] | None, message: str) -> None:
    """Raise :class:`Stopped` (``message``, interrupted) when ``should_stop()`` says so:
    between fits, and before or after a call that cannot be stopped inside."""
    if should_stop is not None and should_stop():
        raise Stopped(message, done=0, interrupted=True)


def polled(
    call: Callable[[], Any],
    should_stop: Callable[[], bool] | None,
    message: str,
    *,
    every: float = 0.5,
) -> Any:
    """``call()``, which cannot be cut into calls (scikit-learn's KMeans on the pixels,
    the compilation of a program), with ``should_stop`` polled every ``every`` seconds.

    A stop already asked for raises before the call starts. The call runs in a
    daemon thread; a stop raises :class:`Stopped` (``message``, interrupted) at
    once and leaves the thread to finish on its own, its result dropped:
    ``jaxae run`` exits without waiting for it. Without ``should_stop`` it is a
    plain call.
    """
    if should_stop is None:
        return call()
    check_stop(should_stop, message)  # asked before it starts: do not start what cannot be cut
    result: list = []

    def work():
        try:
            result.append((True, call()))
        except BaseException as e:  # raised again in the caller's thread
            result.append((False, e))

    thread = threading.Thread(target=work, daemon=True, name="jaxae-polled")
    thread.start()
    while thread.is_alive():
        thread.join(timeout=every)
        if thread.is_alive() and should_stop():
            raise Stopped(message, done=0, interrupted=True)
    ok, value = result[0]
    if not ok:
        raise value
    return value


def default_chunk(epochs: int, steps_per_epoch: int) -> int:
    """Epochs per chunk (a checkpoint chance): about 20 a run, at least ~2,000 steps each."""
    return max(1, min(epochs, max(math.ceil(epochs / 20), math.ceil(2000 / steps_per_epoch))))


def chunk_for(train_config: TrainConfig, n: int, checkpoint_every: int | None = None) -> int:
    """The epochs per chunk of a run on ``n`` images, at most ``checkpoint_every``."""
    steps = max(n // train_config.batch_size, 1)
    return min(default_chunk(train_config.epochs, steps), checkpoint_every or train_config.epochs)
