"""Folders of images (jaxae.data.folder) as --dataset, and through encode and predict.

The reference is the IDX reader: the same images written as PNGs into one subfolder per
label must load as the same pixels and labels, and train to the same codes, clusters and
scores, as the same images in an IDX file.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxae.cli import main
from jaxae.config import DataConfig
from jaxae.data import is_streamable, load_dataset, read_idx
from jaxae.data.folder import open_folder
from jaxae.errors import JaxaeError
from tests.helpers import TINY_MODEL, mnist_5k, write_idx


def write_folder(root: Path, images: np.ndarray, labels=None, *, ext: str = "png", **save):
    """Image i as ``root/<label>/<i>.<ext>`` (``root/<i>.<ext>`` without labels).

    Returns the row order the folder gives: by class folder, then by file name.
    """
    for i, image in enumerate(images):
        folder = root if labels is None else root / str(labels[i])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:05d}.{ext}", **save)
    return np.arange(len(images)) if labels is None else np.argsort(labels, kind="stable")


def write_idx_pair(folder: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    folder.mkdir()
    write_idx(folder / "t10k-images-idx3-ubyte", images)
    write_idx(folder / "t10k-labels-idx1-ubyte", labels.astype(np.uint8))
    return folder


def blobs(n: int = 120, shape=(8, 6), classes: int = 3, seed: int = 0):
    """uint8 images around ``classes`` random prototypes, and their labels."""
    rng = np.random.default_rng(seed)
    prototypes = rng.integers(0, 256, (classes, *shape))
    labels = rng.integers(0, classes, n)
    noisy = prototypes[labels] + rng.normal(0, 20, (n, *shape))
    return np.clip(noisy, 0, 255).astype(np.uint8), labels


def run(out: Path, dataset, *flags) -> tuple[dict, np.ndarray]:
    """``jaxae run`` of a tiny model: (report.json, clusters.npy)."""
    argv = ["run", "--dataset", str(dataset), "--out", str(out), "--n", "all"]
    argv += ["--epochs", "2", "--batch-size", "20", *TINY_MODEL, *flags]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(argv) == 0
    return json.loads((out / "report.json").read_text()), np.load(out / "clusters.npy")


def run_error(tmp_path: Path, *argv: str) -> str:
    """stderr of a ``jaxae run`` that must fail with one line, status 2 and no run folder."""
    out, err = tmp_path / "out", io.StringIO()
    argv = ["run", "--out", str(out), "--n", "all", "--epochs", "1", *TINY_MODEL, *argv]
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = main(argv)
    err = err.getvalue()
    assert status == 2, err
    assert err.count("\n") == 1 and err.startswith("jaxae run: error: "), err
    assert "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    return err


def assert_same_runs(by_folder, by_idx) -> None:
    """Two runs on the same pixels: the same data fingerprint, clusters and scores."""
    (folder_report, folder_clusters), (idx_report, idx_clusters) = by_folder, by_idx
    assert folder_report["fingerprint"] == idx_report["fingerprint"]
    assert folder_report["image_shape"] == idx_report["image_shape"]
    np.testing.assert_array_equal(folder_clusters, idx_clusters)
    assert folder_report["metrics"].keys() == idx_report["metrics"].keys()
    for method, scores in folder_report["metrics"].items():
        for k in ("acc", "nmi", "ari"):
            assert scores[k] == pytest.approx(idx_report["metrics"][method][k], rel=1e-6)
    assert folder_report["final_loss"] == pytest.approx(idx_report["final_loss"], rel=1e-6)


# --- the same images as in an IDX file -------------------------------------------------


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Blobs as a class folder and as IDX (in the folder's row order), and a run on each."""
    tmp = tmp_path_factory.mktemp("synthetic")
    images, labels = blobs()
    order = write_folder(tmp / "folder", images, labels)
    write_idx_pair(tmp / "idx", images[order], labels[order])
    runs = {
        name: run(tmp / f"run-{name}", tmp / name, "--clusters", "3") for name in ("folder", "idx")
    }
    return tmp, images[order], labels[order], runs


def test_a_class_folder_loads_the_pixels_and_labels_of_the_idx_file(synthetic):
    tmp, images, labels, _ = synthetic
    ds = load_dataset(tmp / "folder")
    ref = load_dataset(tmp / "idx")
    np.testing.assert_array_equal(ds.images, ref.images)
    np.testing.assert_array_equal(ds.images, images.reshape(len(images), -1))
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.images.dtype == np.float32 and ds.labels.dtype == np.int64
    assert ds.image_shape == ref.image_shape == (8, 6)
    assert ds.class_names == ("0", "1", "2") and ref.class_names is None


def test_a_class_folder_trains_as_the_idx_file_does(synthetic):
    _, _, _, runs = synthetic
    assert_same_runs(runs["folder"], runs["idx"])
    assert runs["folder"][0]["class_names"] == ["0", "1", "2"]
    assert runs["idx"][0]["class_names"] is None


def test_mnist_as_pngs_trains_as_its_idx_file(tmp_path):
    source = mnist_5k()
    images = read_idx(source / "t10k-images-idx3-ubyte.gz")[:300]
    labels = read_idx(source / "t10k-labels-idx1-ubyte.gz")[:300]
    order = write_folder(tmp_path / "pngs", images, labels)
    write_idx_pair(tmp_path / "idx", images[order], labels[order])
    ds = load_dataset(tmp_path / "pngs")
    np.testing.assert_array_equal(ds.images, images[order].reshape(300, 784))
    np.testing.assert_array_equal(ds.labels, labels[order])
    assert ds.class_names == tuple(str(d) for d in range(10))
    by_folder = run(tmp_path / "run-pngs", tmp_path / "pngs")
    assert_same_runs(by_folder, run(tmp_path / "run-idx", tmp_path / "idx"))
    assert by_folder[0]["class_names"] == [str(d) for d in range(10)]


def test_encode_and_predict_on_a_folder(synthetic, tmp_path):
    import jaxae

    tmp, _, _, _ = synthetic
    run_dir, folder = tmp / "run-folder", tmp / "folder"
    assert is_streamable(folder) and not is_streamable(tmp / "idx")  # IDX folders load whole
    codes, clusters = tmp_path / "codes.npy", tmp_path / "clusters.npy"
    with contextlib.redirect_stdout(io.StringIO()):
        # Streamed: 7 rows at a time, the last chunk short.
        assert main(["encode", str(run_dir), str(folder), "--out", str(codes),
                     "--chunk-rows", "7", "--no-progress"]) == 0  # fmt: skip
        assert main(["predict", str(run_dir), str(folder), "--out", str(clusters)]) == 0
    expected = jaxae.load(run_dir).encode(load_dataset(tmp / "idx").images)
    np.testing.assert_allclose(np.load(codes), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.load(clusters), np.load(run_dir / "clusters.npy"))
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["encode", str(run_dir), str(folder), "--out", str(codes), "--n", "5"]) == 0
    np.testing.assert_allclose(np.load(codes), expected[:5], rtol=1e-6, atol=1e-6)


def test_n_decodes_the_first_rows(synthetic):
    tmp, images, labels, _ = synthetic
    ds = load_dataset(tmp / "folder", n=5)
    np.testing.assert_array_equal(ds.images, images[:5].reshape(5, -1))
    np.testing.assert_array_equal(ds.labels, labels[:5])
    with pytest.raises(JaxaeError, match=r"n=121 is larger than the 120 images"):
        load_dataset(tmp / "folder", n=121)


# --- layouts, order, colour, sizes -----------------------------------------------------


def test_files_are_read_in_sorted_order_and_others_are_skipped(tmp_path):
    images, _ = blobs(6)
    for i in (3, 0, 5, 1, 4, 2):  # written out of order
        Image.fromarray(images[i]).save(tmp_path / f"img{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.png").write_bytes(b"not read")
    (tmp_path / ".thumbnails").mkdir()  # hidden: neither a class nor a second layout
    Image.fromarray(images[0]).save(tmp_path / ".thumbnails" / "x.png")
    first, second = load_dataset(tmp_path), load_dataset(tmp_path)
    np.testing.assert_array_equal(first.images, images.reshape(6, -1))
    np.testing.assert_array_equal(first.images, second.images)
    assert first.labels is None and first.class_names is None


def test_class_names_are_sorted_and_kept(tmp_path):
    images, _ = blobs(4)
    for i, name in enumerate(["zebra/a.png", "apple/b.png", "mango/c.png", "apple/d.png"]):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.fromarray(images[i]).save(tmp_path / name)
    ds = load_dataset(tmp_path)
    assert ds.class_names == ("apple", "mango", "zebra")
    assert ds.labels.tolist() == [0, 0, 1, 2]
    np.testing.assert_array_equal(ds.images, images[[1, 3, 2, 0]].reshape(4, -1))


def test_rgb_and_greyscale_images_together_are_rgb(tmp_path):
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (5, 4), dtype=np.uint8)
    colour = rng.integers(0, 256, (5, 4, 3), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "a.png")
    Image.fromarray(colour).save(tmp_path / "b.png")
    Image.fromarray(np.dstack([colour, grey])).save(tmp_path / "c.png")  # RGBA: alpha dropped
    ds = load_dataset(tmp_path)
    assert ds.image_shape == (5, 4, 3) and ds.images.shape == (3, 60)
    np.testing.assert_array_equal(ds.images[0], np.repeat(grey[..., None], 3, axis=2).ravel())
    np.testing.assert_array_equal(ds.images[1], colour.ravel())
    np.testing.assert_array_equal(ds.images[2], colour.ravel())


def test_image_size_resizes_the_images_of_another_size(tmp_path):
    rng = np.random.default_rng(2)
    right = rng.integers(0, 256, (8, 6), dtype=np.uint8)
    other = rng.integers(0, 256, (12, 5), dtype=np.uint8)
    Image.fromarray(right).save(tmp_path / "a.png")
    Image.fromarray(other).save(tmp_path / "b.png")
    ds = load_dataset(tmp_path, image_size=(8, 6))
    assert ds.image_shape == (8, 6)
    np.testing.assert_array_equal(ds.images[0], right.ravel())  # its size already: untouched
    resized = Image.fromarray(other).resize((6, 8), Image.Resampling.BICUBIC)
    np.testing.assert_array_equal(ds.images[1], np.asarray(resized).ravel())
    with pytest.raises(JaxaeError, match=r"different sizes: a.png is 8x6 \(H x W\), b.png is 12x5"):
        load_dataset(tmp_path)
    with pytest.raises(JaxaeError, match=r"image_size=\(8, 6\) resizes the images of a folder"):
        load_dataset("digits", image_size=(8, 6))


def test_folder_rows_read_in_slices_equal_one_read(synthetic):
    tmp, images, _, _ = synthetic
    with open_folder(tmp / "folder") as rows:
        assert rows.shape == (120, 8, 6) and rows.dtype == np.uint8 and rows.width == 48
        whole = rows.read(0, 120)
        parts = np.concatenate([rows.read(s, min(s + 50, 120)) for s in range(0, 120, 50)])
    np.testing.assert_array_equal(whole, parts)
    np.testing.assert_array_equal(whole, images.reshape(120, -1))


def test_image_size_survives_the_checkpoints_json():
    config = DataConfig(source="x", image_size=(8, 6))
    saved = json.loads(json.dumps(vars(config)))
    assert DataConfig(**saved) == config and DataConfig(**saved).image_size == (8, 6)


# --- JPEG and colour through jaxae run -------------------------------------------------


def test_a_folder_of_colour_jpegs_runs(tmp_path):
    rng = np.random.default_rng(3)
    write_folder(tmp_path / "jpegs", rng.integers(0, 256, (40, 8, 6, 3), dtype=np.uint8),
                 ext="jpg", quality=90)  # fmt: skip
    report, clusters = run(tmp_path / "run", tmp_path / "jpegs", "--clusters", "2")
    assert report["image_shape"] == [8, 6, 3] and report["input_dim"] == 144
    assert report["n"] == 40 and clusters.shape == (40,) and report["class_names"] is None
    assert report["metrics"] == {}  # no labels, no scores
    for png in ("clusters.png", "reconstructions.png", "codes.png"):
        assert (tmp_path / "run" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    jpegs = str(tmp_path / "jpegs")
    err = run_error(tmp_path, "--dataset", jpegs, "--batch-size", "20", "--shift", "0.1")
    assert "greyscale images only" in err


def test_the_confusion_figure_names_the_classes(monkeypatch, tmp_path):
    from jaxae import figures

    drawn = []
    monkeypatch.setattr(figures, "save_figure", lambda fig, path: drawn.append(fig))
    labels, clusters = np.array([0, 0, 1, 2]), np.array([1, 1, 0, 0])
    figures.confusion_figure(labels, clusters, tmp_path / "c.png", label_names=["a", "b", "c"])
    figures.confusion_figure(labels, clusters, tmp_path / "c.png")
    named, numbered = ([t.get_text() for t in f.axes[0].get_yticklabels()] for f in drawn)
    assert named == ["a", "b", "c"] and numbered == ["0", "1", "2"]


# --- bad folders: one line, status 2, no run folder ------------------------------------


def _png(path: Path, shape=(8, 6), seed=0) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(image).save(path)
    return path.read_bytes()


def _garbage(d: Path):
    _png(d / "a.png")
    (d / "b.png").write_bytes(b"not a png at all")


def _truncated(d: Path):  # its header reads; its pixels do not
    data = _png(d / "a.png", (40, 40))
    (d / "b.png").write_bytes(data[: len(data) - 40])


def _mixed(d: Path):
    _png(d / "a.png")
    _png(d / "b.png", (9, 6))


def _both_layouts(d: Path):
    _png(d / "a.png")
    _png(d / "cats" / "b.png")


def _empty_class(d: Path):
    _png(d / "cats" / "a.png")
    (d / "dogs").mkdir()


def _sixteen_bit(d: Path):
    d.mkdir()
    Image.fromarray(np.full((8, 6), 1000, np.uint16)).save(d / "a.png")


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (_garbage, r"cannot read \S*b.png as an image \(not an image Pillow can read\)"),
        (_truncated, r"cannot read \S*b.png as an image \(.*truncated"),
        (_mixed, r"a.png is 8x6 \(H x W\), b.png is 9x6: pass --image-size H W to resize"),
        (_both_layouts, r"both in itself and in its subfolder cats"),
        (_empty_class, r"the class folder \S*dogs has no images"),
        (_sixteen_bit, r"a.png holds pixels of mode I;16"),
        (Path.mkdir, r"has no images \(no file Pillow reads"),
    ],
    ids=["garbage", "truncated", "mixed sizes", "both layouts", "empty class", "16-bit", "empty"],
)
def test_a_bad_folder_is_one_line_and_no_run_folder(tmp_path, make, match):
    make(tmp_path / "images")
    err = run_error(tmp_path, "--dataset", str(tmp_path / "images"))
    assert re.search(match, err), err


def test_mixed_sizes_run_with_image_size(tmp_path):
    for i in range(20):
        _png(tmp_path / "images" / f"{i:02d}.png", (8, 6) if i % 2 else (10, 7), seed=i)
    report, clusters = run(tmp_path / "run", tmp_path / "images", "--image-size", "8", "6",
                           "--clusters", "2")  # fmt: skip
    assert report["image_shape"] == [8, 6] and clusters.shape == (20,)


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (
            ["--image-size", "8", "6"],
            r"--image-size 8 6 resizes the images of a folder, and "
            r"digits is not a folder of images: drop --image-size",
        ),
        (["--image-size", "0", "6"], r"--image-size must be at least 1"),
    ],
)
def test_image_size_out_of_place_names_its_flag(tmp_path, argv, match):
    assert re.search(match, run_error(tmp_path, *argv))


def test_model_config_takes_a_colour_image_shape():
    from jaxae.config import ModelConfig

    assert ModelConfig(input_dim=144, image_shape=[8, 6, 3]).image_shape == (8, 6, 3)
    with pytest.raises(JaxaeError, match=r"image_shape must be \(H, W\) or \(H, W, 3\)"):
        ModelConfig(input_dim=192, image_shape=(8, 6, 4))
