"""The run page, index.html: written last and atomically, fetching nothing, escaping the
report's strings; and in a real browser (headless Chromium) showing report.json's
scores and drawing every figure of the run, while a broken figure is caught."""

import base64
import json
import os
import re
import shlex
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from jaxae.checkpoint import load_checkpoint
from jaxae.cli import main
from jaxae.methods import label
from jaxae.run_page import page
from tests.helpers import TINY_MODEL

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
needs_browser = pytest.mark.skipif(
    CHROMIUM is None,
    reason=f"no headless browser on PATH ({', '.join(BROWSERS)}): apt-get install chromium",
)
HOSTILE = "</td><script>alert(1)</script><img src=https://x.invalid/a onerror=alert(2)>\"'&"
# DEC with two seeds and augmentation: every figure, the start's and the final scores,
# the pixel baseline, per-seed values, the kept model and the guard's fields.
FLAGS = "--n 300 --epochs 3 --batch-size 50 --seeds 2 --method dec --max-steps 20 --shift 0.1"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The run folder, and every rename into it (``atomic_path``'s last step), in order."""
    out = tmp_path_factory.mktemp("page") / "run"
    renames, replace = [], os.replace

    def recording(src, dst):
        if Path(dst).parent == out:
            renames.append((Path(src).name, Path(dst).name))
        replace(src, dst)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "replace", recording)
        assert main(["run", *FLAGS.split(), *TINY_MODEL, "--out", str(out)]) == 0
    return out, renames


def _report(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text())


def _figures(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*.png")}


class _Tags(HTMLParser):
    """Every start tag with its attributes, and the text outside <style> and <script>."""

    def __init__(self, text: str):
        super().__init__()
        self.tags, self.text, self._skip = [], [], False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._skip = tag in ("style", "script")

    def handle_endtag(self, tag):
        self._skip = False

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)


def test_page_is_written_last_and_atomically_and_records_the_command(run):
    out, renames = run
    *before, last = renames
    assert last == (f".index.html.tmp-{os.getpid()}", "index.html")
    assert before[-1][1] == "report.json"  # the report, then its page
    assert {dst for _, dst in before} >= {"report.json", "checkpoint.msgpack", *_figures(out)}
    assert not [p for p in out.iterdir() if ".tmp" in p.name]
    command = _report(out)["command"]
    assert command == {"argv": ["jaxae", "run", *FLAGS.split(), *TINY_MODEL, "--out", str(out)],
                       "cwd": os.getcwd()}  # fmt: skip
    assert load_checkpoint(out).run["command"] == command  # a resume writes it again


def test_page_fetches_nothing_and_embeds_every_figure(run):
    out, _ = run
    text = (out / "index.html").read_text()
    tags = _Tags(text).tags
    assert not [t for t, a in tags if t in ("link", "iframe", "object", "embed", "base")]
    assert not [a for t, a in tags if t == "script" and "src" in a]
    urls = [v for _, a in tags for k, v in a.items() if k in ("src", "href", "action")]
    assert not [u for u in urls if re.match(r"\s*(https?:)?//", u, re.I)]
    assert not re.search(r"https?://", text)  # nor in CSS (url(...), @import)
    images = {a["alt"]: a["src"] for t, a in tags if t == "img"}
    assert set(images) == _figures(out) and len(images) == 6
    for name, src in images.items():  # each one the file itself, embedded
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]) == (out / name).read_bytes()


def test_every_string_from_the_report_is_escaped(run):
    out, _ = run
    report = _report(out)
    report["dataset"] = HOSTILE
    report["model"]["kernel_init"] = HOSTILE
    report["command"]["argv"].append(HOSTILE)
    report["metrics"][HOSTILE] = report["metrics"]["pixel_kmeans"]
    report["models"][0]["guard"]["signal"] = HOSTILE
    report["models"][0]["guard"]["fired"] = True
    text = page(report, {HOSTILE: b"png"})
    assert "<script>alert" not in text and "<img src=https" not in text
    assert "&lt;/td&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert text.count("<script") == 1 and text.count("<img ") == 1
    found = _Tags(text)
    assert HOSTILE in "".join(found.text)  # shown as the text it is
    assert [a["alt"] for t, a in found.tags if t == "img"] == [HOSTILE]


def test_resume_writes_the_page_a_finished_run_lacks(run, tmp_path, capsys):
    out, _ = run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    (copy / "index.html").unlink()  # as if stopped between report.json and its page
    assert main(["run", "--resume", str(copy)]) == 0
    assert f"wrote its page {copy / 'index.html'}" in capsys.readouterr().out
    assert (copy / "index.html").read_bytes() == (out / "index.html").read_bytes()
    assert main(["run", "--resume", str(copy)]) == 0  # has one: writes nothing
    assert "wrote its page" not in capsys.readouterr().out


def _browse(page_path: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium on ``page_path`` (load event and all) with ``args``."""
    cmd = [
        CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
        *args, page_path.resolve().as_uri(),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def _dom(page_path: Path, tmp_path: Path) -> str:
    return _browse(page_path, tmp_path, "--dump-dom").stdout


def _figures_drawn(dom: str) -> str | None:
    found = re.search(r'<html[^>]*\sdata-figures="([^"]*)"', dom)
    return None if found is None else found.group(1)


@needs_browser
def test_browser_shows_the_scores_and_draws_every_figure(run, tmp_path):
    out, _ = run
    report = _report(out)
    dom = _dom(out / "index.html", tmp_path)
    n = len(_figures(out))
    assert _figures_drawn(dom) == f"{n}/{n}"  # every <img> has naturalWidth > 0
    text = " ".join(" ".join(_Tags(dom).text).split())
    assert {"autoencoder + DEC", "pretrained codes + KMeans", "pixels + KMeans"} <= set(
        map(label, report["metrics"])
    )
    for name, m in report["metrics"].items():
        assert label(name) in text
        for k in ("acc", "nmi", "ari"):
            assert f"{m[k]:.3f} ± {m['std'][k]:.3f}" in text, (name, k)
            assert all(f"{v:.3f}" in text for v in m["per_seed"][k])
    # The run's clusters (its models' codes side by side) are scored beside the mean.
    together = report["consensus"]["metrics"]
    assert list(together) == ["autoencoder_dec"] and "side by side ACC" in text
    assert all(f"{together['autoencoder_dec'][k]:.3f}" in text for k in ("acc", "nmi", "ari"))
    assert report["consensus"]["rule"] in text
    for stage, seconds in report["stage_seconds"].items():
        assert f"{seconds:.2f}" in text, stage
    assert "did not fire (budget 20 steps)" in text or "fired (" in text
    assert shlex.join(report["command"]["argv"]) in text
    shot = tmp_path / "page.png"
    _browse(out / "index.html", tmp_path, f"--screenshot={shot}", "--window-size=1200,2400")
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[:2] == (2400, 1200) and np.ptp(pixels[..., :3]) > 0.5  # not blank


@needs_browser
def test_browser_catches_a_broken_figure(run, tmp_path):
    """A figure the browser cannot decode is counted and named; so is an image from
    outside the page (a file beside it), which the page's policy refuses to load.
    (Chromium draws a truncated PNG as far as it goes: that the embedded bytes are the
    whole file is checked above, without a browser.)"""
    out, _ = run
    text = (out / "index.html").read_text()
    png = (out / "clusters.png").read_bytes()
    good = base64.b64encode(png).decode()
    assert text.count(good) == 1
    damaged = base64.b64encode(b"\0" * 8 + png[8:]).decode()  # its signature zeroed
    outside = '<img src="clusters.png" alt="beside.png">'
    broken = tmp_path / "broken.html"
    broken.write_text(text.replace(good, damaged).replace("</body>", outside + "</body>"))
    shutil.copy(out / "clusters.png", tmp_path)  # the file is there: the policy refuses it
    dom = _dom(broken, tmp_path)
    n = len(_figures(out)) + 1
    assert _figures_drawn(dom) == f"{n - 2}/{n}"
    shown = " ".join(_Tags(dom).text)
    assert "Figures the browser could not draw: clusters.png, beside.png" in shown
