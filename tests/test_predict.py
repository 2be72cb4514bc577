"""``predict`` of a ``umap-gmm`` run: an image's label is a function of the image.

One tiny run (JAX backends) on 1,060 of scikit-learn's digits, some of them
repeated, and 500 digits it never saw. On the CPU: the same labels, codes and
embeddings bit for bit alone, permuted, among other images and in any split
(hypothesis); one label per repeated training image, and ``predict`` on the
training images gives ``clusters.npy`` back on every row.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import jaxae
from jaxae.cli import main
from jaxae.cluster.umap_gmm import fit_umap_gmm, unique_rows
from tests.helpers import TINY_MODEL
from tests.strategies import fuzz

COPIES = {7: 60, 8: 2, 9: 2}  # training image -> extra copies


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(run folder, training images, 500 new images)."""
    images = np.asarray(jaxae.load_dataset("digits").images)
    extra = np.concatenate([np.repeat(images[i : i + 1], c, axis=0) for i, c in COPIES.items()])
    train = np.concatenate([images[:996], extra])
    order = np.random.default_rng(0).permutation(len(train))  # the copies spread out
    train = train[order]
    folder = tmp_path_factory.mktemp("predict")
    np.savez(folder / "train.npz", x=train)
    out = folder / "run"
    args = ["run", "--dataset", str(folder / "train.npz"), "--n", "all", "--method", "umap-gmm"]
    args += ["--umap-epochs", "30", "--n-init", "1", "--epochs", "3", "--batch-size", "50"]
    assert main([*args, *TINY_MODEL, "--no-progress", "--out", str(out)]) == 0
    return out, train, images[-500:]


def test_a_label_is_the_same_alone_permuted_and_among_others(run):
    out, train, new = run
    ae = jaxae.load(out)
    labels = ae.predict(new)
    alone = np.concatenate([ae.predict(new[i : i + 1]) for i in range(len(new))])
    np.testing.assert_array_equal(alone, labels)
    order = np.random.default_rng(1).permutation(len(new))
    np.testing.assert_array_equal(ae.predict(new[order]), labels[order])
    crowd = np.concatenate([train[:300], new, new[::-1]])
    np.testing.assert_array_equal(ae.predict(crowd)[300:], np.concatenate([labels, labels[::-1]]))
    # The codes and the embedding, bit for bit, not only the labels.
    codes = ae.encode(new)
    np.testing.assert_array_equal(ae.encode(new[order]), codes[order])
    np.testing.assert_array_equal(
        np.concatenate([ae.encode(new[i : i + 1]) for i in range(9)]), codes[:9]
    )
    umap = ae.clusterer.fitted.umap
    embedding = umap.transform(codes)
    np.testing.assert_array_equal(umap.transform(codes[order]), embedding[order])
    np.testing.assert_array_equal(umap.transform(codes[3:4])[0], embedding[3])


@fuzz(max_examples=10)
@given(st.data())
def test_any_split_of_the_images_gives_the_same_labels(run, draw):
    out, _, new = run
    ae = jaxae.load(out)
    rows = new[:300]
    whole = ae.predict(rows)
    order = draw.draw(st.permutations(range(len(rows))), label="order")
    cuts = draw.draw(st.lists(st.integers(1, len(rows) - 1), max_size=5, unique=True), label="cuts")
    labels = np.empty_like(whole)
    for piece in np.split(np.asarray(order), sorted(cuts)):
        labels[piece] = ae.predict(rows[piece])
    np.testing.assert_array_equal(labels, whole)


def test_copies_share_a_label_and_predict_gives_the_clusters_back(run):
    out, train, _ = run
    clusters = np.load(out / "clusters.npy")
    first, inverse = unique_rows(train.reshape(len(train), -1).astype(np.float32))
    assert len(first) == len(train) - sum(COPIES.values())
    for u in np.unique(inverse[np.bincount(inverse)[inverse] > 1]):
        assert len(set(clusters[inverse == u].tolist())) == 1
    np.testing.assert_array_equal(jaxae.load(out).predict(train), clusters)


def test_unique_rows_keep_the_first_copys_order():
    x = np.asarray([[3, 0], [1, 0], [3, 0], [2, 0], [1, 0]], np.float32)
    first, inverse = unique_rows(x)
    assert first.tolist() == [0, 1, 3] and inverse.tolist() == [0, 1, 0, 2, 1]
    np.testing.assert_array_equal(x[first][inverse], x)


@pytest.mark.parametrize("backend", ["jax", "umap-learn"])
def test_both_backends_give_copies_one_label_and_predict_them_back(backend):
    if backend == "umap-learn":
        pytest.importorskip("umap")
    x = np.asarray(jaxae.load_dataset("digits", n=300).images, np.float32).reshape(300, -1)
    x = np.concatenate([x, np.repeat(x[:1], 40, axis=0), x[5:10]]) / 16.0
    fit = fit_umap_gmm(x, clusters=5, n_components=3, n_neighbors=10, n_epochs=30, backend=backend)
    assert len(set(fit.labels[[0, *range(300, 340)]].tolist())) == 1
    np.testing.assert_array_equal(fit.labels[340:], fit.labels[5:10])
    # One embedding for all copies: fitted on every row, both backends placed these
    # 41 copies up to 0.6 to 1.3 apart on each axis (the mixture still joined them
    # here, but nothing made it).
    np.testing.assert_array_equal(fit.embedding[300:340], np.repeat(fit.embedding[:1], 40, 0))
    np.testing.assert_array_equal(fit.predict(x), fit.labels)
    np.testing.assert_array_equal(fit.predict(x[::-1]), fit.labels[::-1])
