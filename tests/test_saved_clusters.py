"""clusterer.npz: checked against the SHA-256 the checkpoint records, refused in one line
when damaged; encoding never opens it."""

import shutil
import subprocess
import sys

import numpy as np
import pytest

import jaxae
from jaxae.cli import main
from tests.helpers import TINY_MODEL, without_clusterer_checksum

TINY = ["--n", "300", "--epochs", "1", "--batch-size", "50", *TINY_MODEL]


@pytest.fixture(scope="module")
def kmeans_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "kmeans"
    assert main(["run", *TINY, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def umap_run(tmp_path_factory):
    """umap-gmm with the JAX backends: its fit is saved."""
    out = tmp_path_factory.mktemp("runs") / "umap"
    args = ["--method", "umap-gmm", "--umap", "jax", "--gmm", "jax", "--umap-epochs", "30"]
    assert main(["run", *TINY, *args, "--out", str(out)]) == 0
    return out


def _nan(path, name="gmm_means"):
    """A NaN in one of the arrays: once every image went to cluster 0, exit 0."""
    with np.load(path, allow_pickle=False) as saved:
        arrays = dict(saved)
    arrays[name][0, 0] = np.nan
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {  # how, on which run, what predict says
    "nan": (_nan, "umap_run", "damaged (its SHA-256 is not the one the run recorded"),
    "truncated": (_truncate, "kmeans_run", "damaged (truncated or corrupted"),
    "flipped": (_flip, "kmeans_run", "damaged (truncated or corrupted"),
    "deleted": (lambda path: path.unlink(), "kmeans_run", "clusterer.npz is missing"),
}


def _predict(folder, out) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "jaxae.cli", "predict", str(folder), "digits", "--n", "50"]
    return subprocess.run(
        [*command, "--out", str(out)], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_clusterer_is_refused_by_predict_and_ignored_by_encode(
    request, tmp_path, capsys, damage
):
    spoil, run, message = DAMAGE[damage]
    run = request.getfixturevalue(run)
    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    spoil(folder / "clusterer.npz")
    done = _predict(folder, tmp_path / "pred.npy")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1 and message in done.stderr
    assert "restore the run's own copy, or train again with jaxae run" in done.stderr
    assert not (tmp_path / "pred.npy").exists()
    # encode does not need the clusterer, nor does jaxae.load(...).encode.
    codes = tmp_path / "codes.npy"
    assert main(["encode", str(folder), "digits", "--n", "50", "--out", str(codes)]) == 0
    images = jaxae.load_dataset("digits", n=50).images
    np.testing.assert_array_equal(np.load(codes), jaxae.load(run).encode(images))
    np.testing.assert_array_equal(jaxae.load(folder).encode(images), np.load(codes))


@pytest.mark.parametrize("run", ["kmeans_run", "umap_run"])
def test_a_folder_without_the_checksum_still_loads_and_is_checked_as_before(
    request, tmp_path, capsys, run
):
    """Runs written before clusterer.npz's SHA-256 was recorded: their arrays are still
    checked for non-finite values and for the width of the codes."""
    run = request.getfixturevalue(run)
    folder = tmp_path / "old"
    shutil.copytree(run, folder)
    without_clusterer_checksum(folder)
    pred = tmp_path / "pred.npy"
    args = ["predict", str(folder), "digits", "--n", "300", "--out", str(pred)]
    assert main(args) == 0
    np.testing.assert_array_equal(np.load(pred), np.load(run / "clusters.npy"))
    pred.unlink()
    name = "centers" if run.name == "kmeans" else "gmm_means"
    _nan(folder / "clusterer.npz", name)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"holds non-finite values (NaN or inf) in {name}" in err
    if name != "centers":
        return
    with np.load(run / "clusterer.npz", allow_pickle=False) as saved:
        centers = saved["centers"]
    with open(folder / "clusterer.npz", "wb") as f:  # another width than the codes'
        np.savez(f, method=np.asarray("kmeans"), centers=centers[:, :-1])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot read the clusters of" in err
    assert not pred.exists()


def test_another_methods_clusterer_names_both_methods(kmeans_run, umap_run, tmp_path, capsys):
    """A KMeans clusterer.npz in a umap-gmm folder was reported as 'it holds None'."""
    folder = tmp_path / "umap"
    shutil.copytree(umap_run, folder)
    shutil.copy(kmeans_run / "clusterer.npz", folder / "clusterer.npz")
    pred = tmp_path / "pred.npy"
    assert main(["predict", str(folder), "digits", "--n", "50", "--out", str(pred)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"holds a kmeans fit, but {folder} was clustered with umap-gmm" in err


def test_a_deleted_clusterer_of_a_jax_umap_run_is_missing_not_umap_learns(
    umap_run, tmp_path, capsys
):
    folder = tmp_path / "umap"
    shutil.copytree(umap_run, folder)
    (folder / "clusterer.npz").unlink()
    pred = tmp_path / "pred.npy"
    assert main(["predict", str(folder), "digits", "--n", "50", "--out", str(pred)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "umap-learn" not in err and "pickle" not in err
    assert f"{folder / 'clusterer.npz'} is missing: restore the run's own copy" in err


def test_resuming_a_run_killed_before_its_first_checkpoint_says_so(tmp_path, capsys):
    """What such a run leaves: its folder, marked and locked, and nothing else."""
    folder = tmp_path / "killed"
    folder.mkdir()
    (folder / ".jaxae-run").touch()
    (folder / ".jaxae-lock").touch()
    assert main(["run", "--resume", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pass a run folder written by jaxae run" not in err
    assert f"{folder} holds no checkpoint: its run stopped" in err
    assert f"start the run again with jaxae run --out {folder}" in err
    # ... which that command accepts: the folder holds nothing a run saved.
    assert main(["run", *TINY, "--out", str(folder)]) == 0
