"""gmm and umap-gmm: reproducible for a seed, predict their own labels, no pickle needed.

umap-gmm is tested with both UMAP backends, the default (JAX) and umap-learn; the
umap-learn tests pay numba's compilation once (about 15 s for the fit and 6 s for
``transform`` on first use in a process); the data is kept tiny.
"""

import json
import sys

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture

from jaxae.cluster import GMMFit, fit_gmm, fit_umap_gmm, gmm_arrays, gmm_from_arrays
from jaxae.cluster.umap_gmm import UMAP_MISSING
from jaxae.errors import JaxaeError


@pytest.fixture(scope="module")
def blobs():
    x, y = make_blobs(n_samples=300, n_features=12, centers=4, cluster_std=1.0, random_state=0)
    return x, y


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_gmm_predicts_its_labels_and_is_seeded(blobs, covariance_type):
    x, y = blobs
    fit = fit_gmm(x, clusters=4, n_init=2, seed=3, covariance_type=covariance_type)
    assert fit.labels.shape == (300,) and fit.labels.dtype == np.int32
    assert adjusted_rand_score(y, fit.labels) == 1.0
    np.testing.assert_array_equal(fit.predict(x), fit.labels)
    again = fit_gmm(x, clusters=4, n_init=2, seed=3, covariance_type=covariance_type)
    np.testing.assert_array_equal(again.model.means_, fit.model.means_)


def test_gmm_from_arrays_predicts_as_the_original(blobs):
    x, _ = blobs
    fit = fit_gmm(x, clusters=4, seed=0)
    arrays = gmm_arrays(fit.model)
    assert all(a.dtype != object for a in arrays.values())  # savez without pickle
    rebuilt = gmm_from_arrays(arrays)
    np.testing.assert_array_equal(rebuilt.precisions_cholesky_, fit.model.precisions_cholesky_)
    new = x + np.random.default_rng(0).normal(scale=0.5, size=x.shape)
    np.testing.assert_array_equal(rebuilt.predict(new), fit.model.predict(new))
    np.testing.assert_allclose(rebuilt.predict_proba(new), fit.model.predict_proba(new))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"clusters": 400}, "400 clusters is more than the 300 samples"),
        ({"n_init": 0}, "n_init must be at least 1"),
        ({"covariance_type": "banded"}, "unknown covariance_type 'banded'"),
        ({"reg_covar": -1.0}, "reg_covar must be at least 0"),
    ],
)
def test_gmm_bad_values_give_one_line(blobs, kwargs, match):
    with pytest.raises(JaxaeError, match=match) as error:
        fit_gmm(blobs[0], **kwargs)
    assert "\n" not in str(error.value)


def test_missing_umap_learn_gives_one_line(blobs, monkeypatch):
    # None in sys.modules makes `import umap` raise ImportError, as when it is absent.
    monkeypatch.setitem(sys.modules, "umap", None)
    with pytest.raises(JaxaeError) as error:
        fit_umap_gmm(blobs[0], clusters=4, backend="umap-learn")
    assert (
        str(error.value)
        == UMAP_MISSING
        == "umap-gmm needs umap-learn: pip install 'jaxae[umap]', or pass umap.backend=jax"
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_neighbors": 300}, "n_neighbors=300 needs more than the 300 samples"),
        ({"n_neighbors": 1}, "n_neighbors must be at least 2"),
        ({"n_components": 0}, "n_components must be at least 1"),
        ({"min_dist": -0.1}, "min_dist must be at least 0"),
        ({"metric": 3}, "metric must be a name"),
        ({"n_epochs": 0}, "n_epochs must be at least 1"),
    ],
)
def test_umap_gmm_bad_values_give_one_line(blobs, kwargs, match):
    with pytest.raises(JaxaeError, match=match) as error:
        fit_umap_gmm(blobs[0], clusters=4, **kwargs)
    assert "\n" not in str(error.value)


@pytest.fixture(scope="module", params=["jax", "umap-learn"])
def umap_fit(blobs, request):
    if request.param == "umap-learn":
        pytest.importorskip("umap")
    return fit_umap_gmm(  # 100 layout epochs: blobs need no more
        blobs[0], clusters=4, n_init=2, seed=0, n_epochs=100, backend=request.param
    )


def test_umap_gmm_finds_the_blobs_and_is_reproducible(blobs, umap_fit):
    x, y = blobs
    assert umap_fit.embedding.shape == (300, 10)
    assert adjusted_rand_score(y, umap_fit.labels) == 1.0
    backend = "jax" if umap_fit.arrays() is not None else "umap-learn"
    again = fit_umap_gmm(x, clusters=4, n_init=2, seed=0, n_epochs=100, backend=backend)
    np.testing.assert_array_equal(again.embedding, umap_fit.embedding)
    np.testing.assert_array_equal(again.labels, umap_fit.labels)


def test_umap_gmm_predict(blobs, umap_fit):
    x, _ = blobs
    # On the training codes both backends hand back the training embedding: exact.
    np.testing.assert_array_equal(umap_fit.predict(x), umap_fit.labels)
    # On codes it has not seen, transform optimises them among their neighbours.
    moved = x[:60] + np.random.default_rng(0).normal(scale=1e-3, size=(60, x.shape[1]))
    assert (umap_fit.predict(moved) == umap_fit.labels[:60]).mean() >= 0.99
    with pytest.raises(JaxaeError, match="11 columns but the clustering was fitted on 12"):
        umap_fit.predict(x[:, :11])


def test_the_device_mixture_is_carried_as_a_saved_gaussian_mixture(blobs):
    from jaxae.cluster.gmm import fit_mixture

    x, y = blobs
    fit = fit_mixture(x, clusters=4, n_init=2, seed=0, backend="jax")
    assert adjusted_rand_score(y, fit.labels) == 1.0
    np.testing.assert_array_equal(fit.predict(x), fit.labels)  # what a run saves predicts
    back = GMMFit.from_arrays(fit.arrays())
    np.testing.assert_array_equal(back.predict(x), fit.labels)
    with pytest.raises(JaxaeError, match="unknown backend 'torch'"):
        fit_mixture(x, clusters=4, n_init=1, seed=0, backend="torch")


def test_the_device_mixture_fits_codes_where_scikit_learns_does(tmp_path):
    """100-dimensional codes of 800 digits, 90 of their units dead: every float32 factor
    used to fail here (reg_covar 1e-6 against variances near 2, in 10 live dimensions
    shared by 10 components). The device's mixture is compared with scikit-learn's on
    the same codes with the same regularisation (ours is relative: 1e-6 raised to the
    float32 floor of F epsilons, times the codes' mean variance).

    The digits go in as a .npz without their labels: the same images give the same
    codes, and the run skips the pixel baselines (a full mixture on 784 pixels, most
    of the run's time), which this test never reads."""
    from jaxae.checkpoint import load_checkpoint
    from jaxae.cli import main
    from jaxae.cluster.jax_gmm import fit_gmm_jax
    from jaxae.config import ClusterConfig, DataConfig
    from jaxae.experiment import load_data
    from jaxae.rundir import load
    from tests.helpers import mnist_5k, unlabelled_npz

    unlabelled = unlabelled_npz(tmp_path / "digits.npz", str(mnist_5k()), 800)
    out = tmp_path / "run"
    flags = ["--n", "800", "--epochs", "3", "--method", "gmm", "--no-progress"]
    assert main(["run", "--dataset", str(unlabelled), *flags, "--out", str(out)]) == 0
    assert json.loads((out / "report.json").read_text())["metrics"] == {}  # no baselines
    images = load_data(DataConfig(**load_checkpoint(out).run["data"])).images
    codes = np.asarray(load(out).encode(images), np.float64)
    labels = np.load(out / "clusters.npy").reshape(-1)
    f = codes.shape[1]
    reg = max(1e-6, f * float(np.finfo(np.float32).eps)) * np.mean(np.var(codes, axis=0))
    fits = [GaussianMixture(10, reg_covar=reg, random_state=s).fit(codes) for s in range(3)]
    assert codes.shape == (800, 100)
    # Another k-means start gives another, equally likely, mixture: scikit-learn's own
    # seeds 0-2 agree at adjusted Rand indices of 0.87 to 0.995 on these codes, and
    # ours (seed 0) at 0.78 to 0.86 with them, so 0.7 leaves room for float32 rounding.
    for reference in fits:
        assert adjusted_rand_score(reference.predict(codes), labels) > 0.7
    # The lower bounds of local optima of the same likelihood: within 0.5% (measured 0.1%).
    config = ClusterConfig.from_dict(load_checkpoint(out).run["cluster"])
    ours = fit_gmm_jax(codes, clusters=10, n_init=config.n_init, seed=config.seed)  # the run's
    # (the run labels by scikit-learn's predict of the same mixture, in float64)
    assert adjusted_rand_score(ours.labels, labels) > 0.99
    best = max(g.lower_bound_ for g in fits)
    assert abs(ours.lower_bound - best) < 5e-3 * abs(best)


def test_the_reg_covar_flag_reaches_the_fit_and_a_failure_names_it(tmp_path, monkeypatch, capsys):
    from jaxae.cli import main
    from jaxae.cluster import jax_gmm
    from tests.helpers import SMALL

    seen = []
    real = jax_gmm.fit_gmm_jax

    def recording(*args, **kwargs):
        seen.append(kwargs["reg_covar"])
        return real(*args, **kwargs)

    monkeypatch.setattr(jax_gmm, "fit_gmm_jax", recording)
    flags = [*SMALL, "--epochs", "1", "--method", "gmm", "--gmm-reg-covar", "0.01"]
    assert main(["run", *flags, "--out", str(tmp_path / "a")]) == 0
    assert seen and set(seen) == {0.01}  # the codes' mixture and the pixels'
    # Every factor failing (no float32 floor, no retries, no reg_covar): the message
    # names the flag that fixes it.
    monkeypatch.setattr(jax_gmm, "_REG_FLOOR", 0.0)
    monkeypatch.setattr(jax_gmm, "_REG_RETRIES", 0)
    flags[-1] = "0"
    capsys.readouterr()
    assert main(["run", *flags, "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "pass a larger --gmm-reg-covar than 0.0 (e.g. --gmm-reg-covar 0.0001)" in err, err
    flags[-1] = "-1"  # refused with the flag's name before anything runs
    assert main(["run", *flags, "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "--gmm-reg-covar" in err and "reg_covar" not in err, err


def test_scikit_learns_mixture_runs_beside_a_poll(blobs):
    from jaxae.cluster.gmm import fit_mixture
    from jaxae.loop import Stopped

    options = dict(clusters=4, n_init=1, seed=0, backend="sklearn")
    plain = fit_mixture(blobs[0], **options)
    polled = fit_mixture(blobs[0], **options, should_stop=lambda: False)
    np.testing.assert_array_equal(polled.labels, plain.labels)
    big = np.tile(blobs[0], (200, 1))  # 60,000 rows: longer than a poll's half second
    with pytest.raises(Stopped, match="scikit-learn's mixture stopped"):
        fit_mixture(big, **options, should_stop=lambda: True)
