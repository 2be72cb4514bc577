"""Interrupted, diverging or repeated runs: nothing lost, nothing half-written, exact resumes."""

import json
import signal
import subprocess
import time

import numpy as np
import pytest

from jaxae.checkpoint import load_checkpoint
from jaxae.cli import main
from jaxae.config import ModelConfig, TrainConfig
from jaxae.errors import JaxaeError
from jaxae.train import TrainingStopped, fit
from tests.helpers import SMALL, run_command, with_lr


def _wait_for_checkpoint(proc, path, *, min_epoch: int, timeout: float = 180) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if path.exists():
            epoch = load_checkpoint(path.parent).epoch
            if epoch >= min_epoch:
                return epoch
        time.sleep(0.2)
    raise AssertionError("no checkpoint appeared")


def test_sigkill_then_resume_is_bitwise_equal(tmp_path, capsys):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    # Long enough that the kill lands in training on a quiet CPU too (400 epochs of
    # this tiny model can finish between two polls of the checkpoint).
    args = [*SMALL, "--epochs", "2000", "--checkpoint-every", "20"]
    proc = subprocess.Popen(
        run_command(*args, "--out", str(killed)), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    epoch = _wait_for_checkpoint(proc, killed / "checkpoint.msgpack", min_epoch=20)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert not (killed / "report.json").exists() and epoch < 2000
    assert main(["run", "--resume", str(killed), "--no-progress"]) == 0
    assert main(["run", *args, "--out", str(whole)]) == 0
    a, b = load_checkpoint(killed), load_checkpoint(whole)
    np.testing.assert_array_equal(a.loss_history, b.loss_history)
    for x, y in zip(
        *(np.concatenate([np.ravel(v) for v in _leaves(c.state)]) for c in (a, b)), strict=True
    ):
        assert x == y or (np.isnan(x) and np.isnan(y))
    report = json.loads((killed / "report.json").read_text())
    assert report["epochs"] == 2000 and len(report["loss_history"]) == 2000


def _leaves(tree):
    import jax

    return jax.tree.leaves(tree)


def test_sigint_saves_and_says_how_to_resume(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        run_command(*SMALL, "--epochs", "100000", "--checkpoint-every", "10", "--out", str(out)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_checkpoint(proc, out / "checkpoint.msgpack", min_epoch=10)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"resume with: jaxae run --resume {out}" in err and "Traceback" not in err
    ckpt = load_checkpoint(out)
    assert ckpt.epoch % 10 == 0 and 10 <= ckpt.epoch < 100000
    assert np.isfinite(ckpt.loss_history[:, : ckpt.epoch]).all()
    assert np.isnan(ckpt.loss_history[:, ckpt.epoch :]).all()
    assert sorted(p.name for p in out.iterdir()) == [
        ".jaxae-lock",
        ".jaxae-run",
        "checkpoint.msgpack",
    ]  # no report, no temp files


def test_divergence_stops_at_the_chunk_and_names_the_epoch(trained):
    ds, model_config, first = trained  # 3 finite epochs at lr 0.01
    seen = []
    # Adam's steps are bounded by lr, so only a huge rate overflows within an epoch.
    with pytest.raises(TrainingStopped, match=r"diverged: the loss of epoch 4 is (nan|inf)") as e:
        fit(
            ds.images,
            model_config=model_config,
            progress=False,
            epochs_per_chunk=1,
            train_config=TrainConfig(epochs=6, batch_size=32, lr=1e6),
            initial=with_lr(first.state, 1e6),  # the rate lives in the optimiser state
            start_epoch=3,
            history=first.loss_history,
            on_chunk=lambda epoch, state, history: seen.append(epoch),
        )
    assert e.value.epoch == 3 and seen == []  # the diverged state is never handed out


def test_cli_divergence_writes_no_nan_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "run",
                *SMALL,
                "--epochs",
                "50",
                "--lr",
                "1e6",
                "--checkpoint-every",
                "1",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "diverged" in err and "lower the learning rate" in err and err.count("\n") == 1
    assert "nothing was saved" in err and not out.exists()


def test_checkpointer_saves_last_finite_state_on_divergence(tmp_path, trained):
    from jaxae.config import ExperimentConfig
    from jaxae.lifecycle import Checkpointer
    from jaxae.parallel import add_model_axis
    from jaxae.rundir import RunFolder

    ds, model_config, first = trained
    train = TrainConfig(epochs=6, batch_size=32, lr=1e6)
    config = ExperimentConfig(model=model_config, train=train, checkpoint_every=100)
    saver = Checkpointer(RunFolder(tmp_path / "run"), config, chunk=1, fingerprint="test")
    state, history = add_model_axis(with_lr(first.state, 1e6)), first.loss_history[None]
    saver.on_chunk(3, state, history)  # not due yet: nothing written
    assert not (tmp_path / "run").exists()
    with pytest.raises(TrainingStopped):
        fit(
            ds.images,
            keep_model_axis=True,
            model_config=model_config,
            progress=False,
            epochs_per_chunk=1,
            train_config=train,
            initial=state,
            start_epoch=3,
            history=history,
            on_chunk=saver.on_chunk,
        )
    assert saver.save_latest() == (3, -1)  # epoch 3, no refinement
    saver.folder.close()
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.epoch == 3 and np.isfinite(ckpt.loss_history[:, :3]).all()


def test_force_replaces_and_resume_of_nothing_fails(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("old")
    assert main(["run", *SMALL, "--epochs", "1", "--out", str(out)]) == 2
    assert "--force to replace a run" in capsys.readouterr().err and (out / "old.txt").exists()
    # --force replaces only a jaxae run: a folder of other files is refused and kept.
    assert main(["run", *SMALL, "--epochs", "1", "--out", str(out), "--force"]) == 2
    assert "not a jaxae run" in capsys.readouterr().err and (out / "old.txt").exists()
    (out / "old.txt").unlink()
    assert main(["run", *SMALL, "--epochs", "1", "--out", str(out)]) == 0
    first = (out / "report.json").read_bytes()
    assert main(["run", *SMALL, "--epochs", "2", "--out", str(out), "--force"]) == 0
    assert (out / "report.json").read_bytes() != first
    assert main(["run", "--resume", str(tmp_path / "nothing")]) == 2
    assert "cannot read checkpoint" in capsys.readouterr().err


def test_every_model_of_a_batch_is_checked_like_a_config():
    with pytest.raises(JaxaeError, match="seed must be at least 0, got -1"):
        fit(np.zeros((64, 64), np.float32), model_config=ModelConfig.tiny(),
            train_config=TrainConfig(epochs=1, batch_size=32), seeds=[0, -1])  # fmt: skip
    with pytest.raises(JaxaeError, match="lr must be a positive, finite learning rate, got inf"):
        fit(
            np.zeros((64, 64), np.float32),
            model_config=ModelConfig.tiny(),
            train_config=TrainConfig(epochs=1, batch_size=32),
            lrs=[float("inf")],
        )
