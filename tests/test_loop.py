"""jaxae.loop.polled: a call that cannot be cut, with a stop seen beside it."""

import threading
import time

import pytest

from jaxae.loop import Stopped, polled


def test_a_stop_is_seen_while_the_call_runs():
    release = threading.Event()
    start = time.monotonic()
    with pytest.raises(Stopped, match=r"^waited$") as info:
        polled(lambda: release.wait(30), lambda: True, "waited", every=0.05)
    assert time.monotonic() - start < 5 and info.value.interrupted
    release.set()  # the abandoned call finishes on its own


def test_the_result_and_errors_of_the_call_come_back():
    assert polled(lambda: 42, lambda: False, "never") == 42
    assert polled(lambda: 42, None, "never") == 42  # no should_stop: a plain call

    def broken():
        raise ValueError("inside")

    with pytest.raises(ValueError, match="inside"):
        polled(broken, lambda: False, "never")
