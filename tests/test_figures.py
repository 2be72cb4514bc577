import os
import subprocess
import sys

import numpy as np

from jaxae.figures import codes_figure, confusion_figure


def test_importing_jaxae_leaves_the_matplotlib_backend_alone():
    code = (
        "import jaxae.experiment, jaxae.rundir, jaxae.figures, jaxae.bench, matplotlib; "
        "print(matplotlib.get_backend())"
    )
    env = {**os.environ, "MPLBACKEND": "svg"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "svg"


def test_codes_and_confusion_figures_are_pngs(tmp_path):
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(200, 10)).astype(np.float32)
    labels = rng.integers(0, 4, 200)
    clusters = (labels + rng.integers(0, 2, 200)) % 5  # 5 clusters for 4 labels
    codes_figure(codes, clusters, tmp_path / "codes.png", title="t")
    confusion_figure(labels, clusters, tmp_path / "confusion.png", title="t")
    for name in ("codes.png", "confusion.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_augmentation_figure_is_a_png(tmp_path):
    from jaxae.augment import AugmentConfig
    from jaxae.figures import augmentation_figure
    from tests.helpers import digits

    ds = digits(3)
    path = tmp_path / "augmentation.png"
    augmentation_figure(
        ds.images.astype(np.float32), ds.image_shape, path, config=AugmentConfig(), versions=3
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["augmentation.png"]  # no temporary left
