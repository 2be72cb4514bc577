"""Run folders and runs that must not lose work or files, one case each.

The signal and concurrency tests start real processes and send real signals.
"""

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from jaxae.checkpoint import load_checkpoint
from jaxae.cli import main
from tests.helpers import SMALL, TINY_MODEL, run_command


def _run(tmp_path, *args, name="run"):
    out = tmp_path / name
    return main(["run", *SMALL, "--epochs", "2", "--out", str(out), *args]), out


# --force replaces only a run folder.
def test_force_refuses_the_working_directory_and_the_datasets_folder(tmp_path, capsys, monkeypatch):
    data = tmp_path / "data.npz"
    np.savez(data, x=np.random.default_rng(0).random((300, 64)).astype(np.float32))
    monkeypatch.chdir(tmp_path)
    for out in (".", str(tmp_path), str(tmp_path.parent)):
        args = ["run", "--dataset", str(data), "--out", out, "--force", *TINY_MODEL]
        assert main([*args, "--epochs", "1"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert data.exists()  # nothing was deleted
    (tmp_path / "sub").mkdir()
    inner = tmp_path / "sub" / "data.npz"
    shutil.copy(data, inner)
    args = ["run", "--dataset", str(inner), "--out", str(tmp_path / "sub"), "--force"]
    assert main([*args, *TINY_MODEL, "--epochs", "1"]) == 2
    assert "holds the dataset" in capsys.readouterr().err and inner.exists()


def test_force_on_a_symlink_is_refused(tmp_path, capsys):
    rc, out = _run(tmp_path)
    assert rc == 0
    link = tmp_path / "link"
    link.symlink_to(out)
    assert main(["run", *SMALL, "--epochs", "1", "--out", str(link), "--force"]) == 2
    assert "symbolic link" in capsys.readouterr().err and (out / "report.json").exists()


# A folder is claimed for the life of a run.
def test_two_runs_on_one_folder_one_refuses(tmp_path):
    out = tmp_path / "run"
    args = [*SMALL, "--epochs", "20000", "--out", str(out)]
    first = subprocess.Popen(
        run_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not (out / ".jaxae-run").exists():  # the first run has claimed it
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.1)
    second = subprocess.run(
        run_command(*args, "--force"), capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 2 and "in use by another jaxae run" in second.stderr
    assert second.stderr.count("\n") == 1
    # The first run went on untouched; stopped now, it saves and says how to resume.
    assert first.poll() is None, first.communicate()
    first.send_signal(signal.SIGTERM)
    _, first_err = first.communicate(timeout=300)
    assert first.returncode == 130 and "--resume" in first_err, first_err
    assert 0 < load_checkpoint(out).epoch < 20000


# A diverged grid member is reported, the others are scored and written.
@pytest.mark.parametrize("labels", [True, False])
def test_a_diverged_learning_rate_is_reported_and_the_rest_written(tmp_path, labels):
    x = np.random.default_rng(0).random((300, 64)).astype(np.float32) * 16
    arrays = {"x": x, "y": np.arange(300) % 10} if labels else {"x": x}
    data = tmp_path / "data.npz"
    np.savez(data, **arrays)
    out = tmp_path / "run"
    args = ["run", "--dataset", str(data), "--lr", "0.01,1e9", "--seeds", "2", "--epochs", "3"]
    assert main([*args, "--batch-size", "50", *TINY_MODEL, "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    diverged = [m for m in report["models"] if m.get("diverged")]
    alive = [m for m in report["models"] if not m.get("diverged")]
    assert {m["lr"] for m in diverged} == {1e9} and {m["lr"] for m in alive} == {0.01}
    assert len(alive) == 2
    if labels:
        assert report["metrics_by_lr"]["0.01"]["autoencoder_kmeans"]["acc"] > 0
        assert report["metrics_by_lr"][str(1e9)] == {}
    assert (out / "clusters.png").exists() and load_checkpoint(out).epoch == 3


# Ctrl-C during start-up stops the run.
@pytest.mark.parametrize("delay", [0.5, 1.2])
def test_ctrl_c_during_start_up_stops_the_run(tmp_path, delay):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        run_command(*SMALL, "--epochs", "2000", "--out", str(out)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert not (out / "report.json").exists()


# SIGTERM and a second Ctrl-C are obeyed within seconds, however long a chunk is.
@pytest.mark.parametrize("how", ["sigterm", "double-ctrl-c"])
def test_signals_are_obeyed_within_seconds_of_a_long_chunk(tmp_path, how):
    out = tmp_path / "run"
    # One chunk of 200,000 epochs: only a host that polls between device calls can stop.
    args = [*SMALL, "--epochs", "200000", "--checkpoint-every", "200000", "--out", str(out)]
    proc = subprocess.Popen(
        run_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not (out / ".jaxae-run").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    time.sleep(4)  # compiled and training
    sent = time.monotonic()
    if how == "sigterm":
        proc.send_signal(signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGINT)
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    waited = time.monotonic() - sent
    assert proc.returncode == 130, err
    assert waited < 15, waited
    assert "Traceback" not in err
    if how == "sigterm":  # the first signal saves where it stopped
        ckpt = load_checkpoint(out)
        assert 0 < ckpt.epoch < 200000 and "resume with" in err


# Counts the program cannot represent are refused before training.
@pytest.mark.parametrize("exiting", [False, True])
def test_after_a_stop_a_process_on_its_way_out_ignores_signals(exiting):
    """``jaxae`` (exiting=True) ignores signals once stopping; a library caller gets its
    handlers back. (Before, a second Ctrl-C after the stop killed the process by SIGINT.)"""
    from jaxae.signals import stop_on_signals

    both = (signal.SIGINT, signal.SIGTERM)
    before = {s: signal.getsignal(s) for s in both}
    with stop_on_signals(exiting=exiting) as stopped:
        signal.raise_signal(signal.SIGINT)
        assert stopped()
    after = {s: signal.getsignal(s) for s in both}
    for s, handler in before.items():
        signal.signal(s, handler)
    assert after == (dict.fromkeys(both, signal.SIG_IGN) if exiting else before)
    with stop_on_signals(exiting=True):  # no signal: the old handlers come back
        pass
    assert {s: signal.getsignal(s) for s in both} == before


def test_epochs_beyond_what_a_run_can_count(tmp_path, capsys):
    for epochs in ("50000000000", "3000000000"):
        rc, out = _run(tmp_path, "--epochs", epochs, name=f"e{epochs}")
        assert rc == 2 and not out.exists()
        err = capsys.readouterr().err
        assert "--epochs" in err and err.count("\n") == 1


# Resume cannot surprise.
def test_resume_refuses_other_flags_and_changed_data(tmp_path, capsys):
    data = tmp_path / "data.npz"
    x = np.random.default_rng(0).random((300, 64)).astype(np.float32)
    np.savez(data, x=x)
    out = tmp_path / "run"
    base = ["run", "--dataset", str(data), "--batch-size", "50", *TINY_MODEL]
    assert main([*base, "--epochs", "3", "--out", str(out)]) == 0
    (out / "report.json").unlink()  # as if it had been interrupted after the last save
    for extra in (["--epochs", "50"], ["--lr", "0.5"], ["--out", str(tmp_path / "y")]):
        assert main(["run", "--resume", str(out), *extra]) == 2
        assert "would change it" in capsys.readouterr().err
    x[0, 0] += 1
    np.savez(data, x=x)  # same width, other data
    assert main(["run", "--resume", str(out)]) == 2
    assert "has changed since the run began" in capsys.readouterr().err


def test_resume_from_another_folder_and_of_a_finished_run(tmp_path, capsys, monkeypatch):
    data = tmp_path / "data.npz"
    np.savez(data, x=np.random.default_rng(0).random((300, 64)).astype(np.float32))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    args = ["run", "--dataset", "data.npz", "--batch-size", "50", *TINY_MODEL, "--epochs", "4"]
    assert main([*args, "--checkpoint-every", "2", "--out", str(out)]) == 0
    report = (out / "report.json").read_bytes()
    monkeypatch.chdir(tmp_path.parent)  # the relative dataset path was stored absolute
    assert main(["run", "--resume", str(out)]) == 0
    assert "finished run" in capsys.readouterr().out
    assert (out / "report.json").read_bytes() == report  # nothing changed


def test_a_resumed_report_counts_the_whole_run(tmp_path):
    out = tmp_path / "run"
    flags = [*SMALL, "--epochs", "600", "--checkpoint-every", "30", "--out", str(out)]
    proc = subprocess.Popen(
        run_command(*flags),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 180
    while not (out / "checkpoint.msgpack").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    (out / ".checkpoint.msgpack.tmp-99999").write_bytes(b"left by a killed run")  # row 14
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["steps"] == 600 * (512 // 64) and report["train_seconds"] > 0
    # The command that started the run, not the resume's: it reproduces the run.
    assert report["command"]["argv"] == ["jaxae", "run", *flags]
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


# Unwritable output is one line before training, and a full disk is one line.
@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(tmp_path, capsys):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        rc, _ = _run(parent)
    finally:
        parent.chmod(0o700)
    assert rc == 2 and "cannot write" in capsys.readouterr().err


def _small_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def test_a_full_disk_is_one_line_before_training(tmp_path, capsys):
    disk = tmp_path / "disk"
    if not _small_tmpfs(disk, "64k"):
        pytest.skip("cannot mount a small tmpfs here")
    try:
        rc = main(["run", "--dataset", "digits", "--epochs", "1", "--out", str(disk / "run")])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
        assert "free" in err or "cannot write" in err
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True, timeout=20)


def test_read_only_filesystem_is_one_line_before_training(tmp_path, capsys):
    disk = tmp_path / "ro"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(disk)],
                          capture_output=True, timeout=20)  # fmt: skip
    if done.returncode:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        rc = main(["run", *SMALL, "--epochs", "1", "--out", str(disk / "run")])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and "cannot write" in err
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True, timeout=20)


@pytest.mark.parametrize("source", ["npy", "idx-folder"])
def test_encode_onto_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, capsys, source):
    rc, run = _run(tmp_path)
    assert rc == 0
    disk = tmp_path / "disk"
    if not _small_tmpfs(disk, "16k"):
        pytest.skip("cannot mount a small tmpfs here")
    try:
        pixels = np.random.default_rng(0).integers(0, 255, (2000, 8, 8), dtype=np.uint8)
        if source == "npy":  # streamed
            data = tmp_path / "x.npy"
            np.save(data, pixels)
        else:  # a folder of IDX files: encoded in memory, then saved
            from tests.helpers import write_idx

            data = tmp_path / "idx"
            data.mkdir()
            write_idx(data / "t10k-images-idx3-ubyte", pixels)
        assert main(["encode", str(run), str(data), "--out", str(disk / "codes.npy")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert not list(disk.iterdir())  # no partial codes, no temporary file
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True, timeout=20)
