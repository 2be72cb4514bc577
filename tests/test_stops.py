"""A stop at every clustering stage, with real processes and real signals.

A Ctrl-C during the JAX UMAP's layout, during the JAX mixture's EM, or during the
pixel baselines (one seed, so no stop between seeds) ends the run within seconds
with exit 130 and the pretrained checkpoint; the resumed run fits the interrupted
stage again and ends with the labels and report of a run that never stopped.

Each test waits for its stage by the progress bar that the stage's loop shows
(``jaxae.loop.drive`` names its bar; the pixel baselines show theirs from the
start), read from the process's stderr as it runs, so the signal lands in it.
"""

import json
import os
import signal
import subprocess
import threading
import time

import numpy as np
import pytest

from jaxae.cli import main
from tests.helpers import TINY_MODEL, run_command, unlabelled_npz

# Digits with a tiny model, one epoch: the stages after pretraining dominate.
BASE = ["--n", "1000", "--batch-size", "100", *TINY_MODEL, "--epochs", "1"]
BASE = [flag for flag in BASE if flag != "--no-progress"]  # the bars mark the stages
# umap-gmm with a layout long enough to land a signal in: 1,500 epochs took 4.4 s
# on a quiet CPU, where the signal, sent when the bar shows after 2 s, could land
# in the last call of the layout, which then finishes before the stop is seen.
UMAP = [*BASE, "--method", "umap-gmm", "--umap-epochs", "5000"]
# A mixture of wider codes from many starts: EM runs for several seconds. With 40
# starts every start converged by iteration ~40, about 2.5 s under load: the signal,
# sent when the bar shows after one ~2 s call, landed in the last call and the stop
# came after the mixture (failed twice with -n 2 beside other tests); 120 starts make
# each iteration three times the work.
EM = [*BASE, "--method", "gmm", "--code-dim", "48", "--hidden", "64", "--n-init", "120"]
# umap-gmm (500 layout epochs): the pixel baselines are KMeans, UMAP and a mixture.
PIXELS = [*BASE, "--method", "umap-gmm"]


class Stderr:
    """A running process's stderr, read as it comes (tqdm writes carriage returns)."""

    def __init__(self, proc: subprocess.Popen):
        self.text = ""
        self._proc = proc
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        fd = self._proc.stderr.fileno()
        while chunk := os.read(fd, 4096):
            self.text += chunk.decode(errors="replace")

    def wait_for(self, marker: str, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.text:
            assert self._proc.poll() is None, f"exited before {marker!r}: {self.text[-2000:]}"
            assert time.monotonic() < deadline, f"no {marker!r} in: {self.text[-2000:]}"
            time.sleep(0.05)

    def finish(self) -> str:
        self._thread.join(timeout=30)
        return self.text


def _whole(tmp_path_factory, flags) -> dict:
    out = tmp_path_factory.mktemp("whole") / "run"
    assert main(["run", *flags, "--no-progress", "--out", str(out)]) == 0
    return _result(out)


def _result(out) -> dict:
    report = json.loads((out / "report.json").read_text())
    return {
        "metrics": report["metrics"],
        "models": report["models"],
        "labels": np.load(out / "clusters.npy"),
    }


def _stop_and_resume(tmp_path, flags, marker: str, stopped: str, whole: dict) -> float:
    """Run ``flags``, SIGINT it once ``marker`` shows; the seconds from signal to exit.

    Asserts exit 130 with ``stopped`` in the message, the pretrained checkpoint, and
    a resume that ends as ``whole`` did."""
    out = tmp_path / "run"
    command = run_command(*flags, "--out", str(out))
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        err = Stderr(proc)
        try:
            err.wait_for(marker)
            sent = time.monotonic()
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=120)
            seconds = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
        text = err.finish()
    assert proc.returncode == 130, text[-3000:]
    assert stopped in text and f"--resume {out}" in text and "Traceback" not in text, text[-3000:]
    assert not (out / "report.json").exists()
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0
    result = _result(out)
    assert result["metrics"] == whole["metrics"] and result["models"] == whole["models"]
    np.testing.assert_array_equal(result["labels"], whole["labels"])
    return seconds


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory) -> list[str]:
    """``--dataset`` with the same 1,000 digits without their labels, for the stops in
    the codes' clustering: their runs fit no pixel baselines, which would double the
    work of each (a second 5,000-epoch layout; a second EM of 120 starts). A stop in
    the baselines, and a resume that scores them as a whole run does, is the pixel
    test's, on labelled digits."""
    path = unlabelled_npz(tmp_path_factory.mktemp("unlabelled") / "digits.npz", "digits", 1000)
    return ["--dataset", str(path)]


@pytest.fixture(scope="module")
def whole_umap(tmp_path_factory, unlabelled):
    whole = _whole(tmp_path_factory, [*UMAP, *unlabelled])
    assert whole["metrics"] == {}  # no labels, no baselines
    return whole


def test_a_sigint_during_the_umap_layout_stops_within_seconds(tmp_path, unlabelled, whole_umap):
    flags = [*UMAP, *unlabelled]
    seconds = _stop_and_resume(
        tmp_path, flags, "the UMAP layout", "the UMAP layout stopped", whole_umap
    )
    assert seconds < 10  # a call of about two seconds, then the exit


def test_a_sigint_during_em_stops_within_seconds(tmp_path, tmp_path_factory, unlabelled):
    flags = [*EM, *unlabelled]
    whole = _whole(tmp_path_factory, flags)
    assert whole["metrics"] == {}
    seconds = _stop_and_resume(
        tmp_path, flags, "the mixture's EM", "the mixture's EM stopped", whole
    )
    assert seconds < 10


def test_a_sigint_during_the_pixel_baselines_of_one_seed_stops(tmp_path, tmp_path_factory):
    whole = _whole(tmp_path_factory, PIXELS)
    seconds = _stop_and_resume(tmp_path, PIXELS, "pixel baselines", "stopped", whole)
    assert seconds < 10
