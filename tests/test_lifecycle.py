"""A run's stages, with real processes and real signals.

A Ctrl-C or SIGTERM during the clustering stage stops the run with exit 130 and a
checkpoint; a kill -9 during a refinement loses at most a chunk; a final save that
fails leaves a checkpoint that resumes without refining twice; every resume ends
with the parameters, labels and scores of a run that never stopped (bitwise on CPU).
"""

import json
import signal
import subprocess
import time

import jax
import numpy as np
import pytest

from jaxae.checkpoint import load_checkpoint
from jaxae.cli import main
from tests.helpers import SMALL, run_command, unlabelled_npz

# DEC on 512 digits with a tiny model: 2 epochs of pretraining, then 10,000 refinement
# steps (tol 0: it never converges early), a few seconds, checkpointed every chunk of
# steps (about 500: a call never runs past a chunk, so a signal lands within one).
STEPS = 10000
# Without the guard, which stops this refinement early (tests/test_guard.py).
PLAIN = [*SMALL, "--epochs", "2", "--method", "dec", "--max-steps", str(STEPS), "--dec-tol", "0"]
PLAIN += ["--no-dec-guard"]
DEC = [*PLAIN, "--checkpoint-every", "1"]


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The same DEC run, never stopped."""
    out = tmp_path_factory.mktemp("whole") / "run"
    assert main(["run", *DEC, "--out", str(out)]) == 0
    return out


def _wait_for_refinement(proc, out, *, timeout=180.0) -> int:
    """Wait until the run has checkpointed part of its refinement; its step."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if (out / "checkpoint.msgpack").exists():
            ckpt = load_checkpoint(out)
            if ckpt.refine is not None and ckpt.refine_step > 0:
                return ckpt.refine_step
        time.sleep(0.1)
    raise AssertionError("no refinement checkpoint appeared")


def _assert_same_run(a, b) -> None:
    """Two run folders hold the same models, refinement, labels and scores."""
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    assert ca.stage == cb.stage == "writing" and ca.refine_step == cb.refine_step
    for x, y in zip(jax.tree.leaves((ca.state, ca.refine)), jax.tree.leaves((cb.state, cb.refine)),
                    strict=True):  # fmt: skip
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    np.testing.assert_array_equal(np.load(a / "clusters.npy"), np.load(b / "clusters.npy"))
    np.testing.assert_array_equal(
        dict(np.load(a / "clusterer.npz"))["centers"], dict(np.load(b / "clusterer.npz"))["centers"]
    )
    ra, rb = (json.loads((f / "report.json").read_text()) for f in (a, b))
    assert ra["models"] == rb["models"] and ra["metrics"] == rb["metrics"]
    assert ra["loss_history"] == rb["loss_history"] and ra["steps"] == rb["steps"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_a_signal_during_refinement_then_resume_equals_a_whole_run(tmp_path, whole, sig):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        run_command(*DEC, "--out", str(out)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    step = _wait_for_refinement(proc, out)
    sent = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:  # the first signal is obeyed within a call of about two seconds
        assert proc.returncode == 130, err
        assert time.monotonic() - sent < 15
        assert "refinement stopped after step" in err and f"--resume {out}" in err
        assert "Traceback" not in err
    ckpt = load_checkpoint(out)
    assert ckpt.stage == "clustering" and step <= ckpt.refine_step < STEPS
    assert not (out / "report.json").exists()
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0
    _assert_same_run(out, whole)
    report = json.loads((out / "report.json").read_text())
    assert report["models"][0]["refine_steps"] == STEPS


def test_a_failed_final_save_resumes_without_refining_twice(tmp_path, whole, monkeypatch, capsys):
    from jaxae import rundir

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(rundir, "clusters_figure", broken)
        assert main(["run", *DEC, "--out", str(out)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    ckpt = load_checkpoint(out)
    assert ckpt.stage == "writing" and ckpt.refine_step == STEPS
    assert not (out / "report.json").exists()
    import importlib

    refine_module = importlib.import_module("jaxae.cluster.refine")  # the module, not refine()
    steps = []
    real = refine_module.refine_steps

    class Counting:  # counts the refinement programs compiled on resume: none
        def lower(self, *args, **kwargs):
            steps.append(1)
            return real.lower(*args, **kwargs)

    monkeypatch.setattr(refine_module, "refine_steps", Counting())
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0
    assert steps == []  # nothing refined again
    _assert_same_run(out, whole)
    assert main(["run", "--resume", str(out)]) == 0
    assert "is a finished run" in capsys.readouterr().out


def test_the_stage_after_pretraining_is_saved_before_clustering(tmp_path, whole):
    """Pretraining shorter than the 60 s interval is still saved before refinement."""
    ckpt = load_checkpoint(whole)
    assert ckpt.epoch == ckpt.train_config.epochs and ckpt.refine_models == [0]
    out = tmp_path / "run"
    proc = subprocess.Popen(run_command(*PLAIN, "--out", str(out)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 180
    while not (out / "checkpoint.msgpack").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    saved = load_checkpoint(out)
    assert saved.epoch == 2 and saved.stage == "clustering"


def test_a_signal_during_umap_stops_inside_its_fit(tmp_path):
    # The digits without their labels: the resume fits no pixel baselines (a second
    # JAX UMAP and mixture, on 64 pixels), which this test never reads; a resume that
    # scores them is tests/test_stops.py's pixel test.
    unlabelled = unlabelled_npz(tmp_path / "digits.npz", "digits", 600)
    out = tmp_path / "run"  # the JAX backends: no numba compilation, in both processes
    args = ["--dataset", str(unlabelled), "--n", "600", "--epochs", "2", "--batch-size", "100"]
    args += ["--hidden", "16"]
    args += ["--code-dim", "8", "--method", "umap-gmm", "--umap", "jax", "--gmm", "jax"]
    args += ["--umap-epochs", "50"]  # enough to be inside the fit when the signal comes
    args += ["--no-progress", "--out", str(out)]
    proc = subprocess.Popen(run_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    deadline = time.monotonic() + 180
    while not (out / "checkpoint.msgpack").exists():  # pretrained: UMAP is next
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err
    # Seen inside the fit (tests/test_stops.py): its neighbour search, host steps or layout.
    assert "the UMAP" in err and "stopped" in err and "Traceback" not in err, err
    assert load_checkpoint(out).stage == "clustering" and not (out / "report.json").exists()
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0
    assert (out / "report.json").exists()
    assert json.loads((out / "report.json").read_text())["metrics"] == {}  # no baselines
