"""A run folder's page, ``index.html``: its report.json and figures as one HTML file.

The page shows what ``jaxae run`` printed and more: the scores (per method the
mean ± std over seeds, each seed's values, the kept model's), the pixel
baselines, every model's loss, refinement and guard, the stage times, every
figure, the configuration and the command that reproduces the run.

It is one file that fetches nothing: inline CSS, and the figures embedded as PNG
data URIs. So it reads the same from the run folder, from a copy of the file alone
(a mail attachment, a CI artifact) or offline, and what it shows cannot drift from
what it was written with. The cost is the figures' bytes again, a third larger in
base64: a few hundred KB beside a checkpoint of megabytes. Its Content-Security-Policy
allows nothing but the embedded images and the page's own style and script (by
hash), so no string in it could load or run anything else; every string from the
report is HTML-escaped as well. The one script marks the page with how many
figures the browser drew (``data-figures="6/6"``) and names any it could not.

``write_page`` is called by ``jaxae.rundir``, which writes run folders, after
report.json: a folder with a page is complete.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import shlex
from collections.abc import Mapping
from pathlib import Path

from jaxae._files import atomic_write
from jaxae.methods import label, method_label

PAGE = "index.html"
METRICS = ("acc", "nmi", "ari")
# Every figure a run can write (jaxae.figures draws them), in the page's order, with
# what it shows; jaxae.rundir takes its list of figures from these keys.
CAPTIONS = {
    "clusters.png": "Ten images of each cluster of the kept model, a row per cluster",
    "loss.png": "Training loss per epoch of every model, the kept one bold",
    "reconstructions.png": "Images (top) and the kept autoencoder's reconstructions (bottom)",
    "codes.png": "The kept model's codes (their first two principal components) by cluster",
    "confusion.png": "How many images of each label (rows) fell in each cluster (columns)",
    "augmented.png": "Inputs as they are (left) and augmented as training saw them",
}
ROLES = {"autoencoder": "final", "pretrained": "start", "pixel": "baseline"}
STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; color: #1d1d1f; max-width: 1100px;
  margin: 0 auto; padding: 1em 1.5em 3em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.8em; }
p.sub { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.7em; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th { background: #f3f3f5; } tr.kept td { background: #eef6ee; } td.sub { padding-left: 2em; }
figure { margin: 1.2em 0; } img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
pre { background: #f6f6f8; padding: 0.7em; overflow-x: auto; white-space: pre-wrap; }
#broken { color: #b00020; font-weight: bold; }
.config { display: flex; flex-wrap: wrap; gap: 0 2.5em; align-items: flex-start; }
"""
SCRIPT = """
addEventListener("load", function () {
  var images = document.images, broken = [];
  for (var i = 0; i < images.length; i++) {
    if (!(images[i].complete && images[i].naturalWidth > 0)) broken.push(images[i].alt);
  }
  document.documentElement.dataset.figures = (images.length - broken.length) + "/" + images.length;
  if (broken.length) {
    var note = document.getElementById("broken");
    note.textContent = "Figures the browser could not draw: " + broken.join(", ");
    note.hidden = false;
  }
});
"""


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


POLICY = f"default-src 'none'; img-src data:; style-src {_hash(STYLE)}; script-src {_hash(SCRIPT)}"


def _e(value) -> str:
    """Any value as escaped text."""
    return html.escape(str(value), quote=True)


def _num(value, digits: int = 3) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "—" if value is None else _e(value)
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _td(text: str, cls: str = "") -> str:
    """A cell of escaped ``text``; class ``n`` for numbers (right-aligned)."""
    return f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>"


def _n(text: str) -> str:
    return _td(text, "n")


def _row(cells: list[str], cls: str = "") -> str:
    """A table row of cells made by ``_td``."""
    return (f'<tr class="{cls}">' if cls else "<tr>") + "".join(cells) + "</tr>"


def _table(head: list[str], rows: list[str]) -> str:
    heads = "".join(f"<th>{_e(h)}</th>" for h in head)
    return f"<table><tr>{heads}</tr>" + "".join(rows) + "</table>"


def _scores(metrics: dict, kept: dict | None, kept_name: str = "kept") -> str:
    """Per method: mean ± std over seeds (or one model's scores) and, where ``kept`` (the
    consensus' scores) is given and there are several, the run's clusters' scores, headed
    ``kept_name``."""
    several = any("std" in _dict(m) for m in metrics.values())
    kept = kept if several else None
    head = [
        "clustering",
        "stage",
        *(k.upper() + (" mean ± std" if several else "") for k in METRICS),
    ]
    if kept is not None:
        head += [f"{kept_name} {k.upper()}" for k in METRICS]
    rows = []
    for name, m in metrics.items():
        m = _dict(m)
        std = _dict(m.get("std"))
        cells = [_td(_e(label(name))), _td(_e(ROLES.get(name.partition("_")[0], "")))]
        for k in METRICS:
            text = _num(m.get(k)) + (f" ± {_num(std.get(k))}" if several else "")
            cells.append(_n(text))
        if kept is not None:
            cells += [_n(_num(_dict(kept.get(name)).get(k))) for k in METRICS]
        rows.append(_row(cells))
    return _table(head, rows)


def _per_seed(metrics: dict, kept_seed) -> str:
    """Each seed's scores, a row per method and score."""
    seeds = next((_dict(m).get("seeds") for m in metrics.values() if _dict(m).get("seeds")), None)
    if not seeds:
        return ""
    head = [
        "clustering",
        "score",
        *(f"seed {s}" + (" (kept)" if s == kept_seed else "") for s in seeds),
    ]
    rows = []
    for name, m in metrics.items():
        per_seed = _dict(_dict(m).get("per_seed"))
        for k in METRICS:
            values = per_seed.get(k) or []
            cells = [_td(_e(label(name))), _td(k.upper()), *(_n(_num(v)) for v in values)]
            rows.append(_row(cells))
    return "<h3>Per seed</h3>" + _table(head, rows)


def _models(report: dict) -> str:
    """A row per trained model: loss, refinement, guard, agreement; the kept one marked."""
    models = report.get("models") or []
    consensus = _dict(report.get("consensus"))
    agreement = consensus.get("agreement") or []
    refined = any("refine_steps" in _dict(m) for m in models)
    head = ["model", "seed", "lr", "final loss", "alive code units"]
    head += ["refinement steps", "converged", "guard"] if refined else []
    head += ["agreement (mean ARI)", "kept"]
    rows = []
    for i, m in enumerate(models):
        m = _dict(m)
        kept = i == consensus.get("model", report.get("selected_model"))
        cells = [_n(str(i)), _n(_e(m.get("seed"))), _n(_e(m.get("lr")))]
        loss = "diverged" if m.get("diverged") else _num(m.get("final_loss"), 4)
        cells += [_n(loss), _n(_num(m.get("alive_code_units")))]
        if refined:
            cells += [_n(_num(m.get("refine_steps"))), _td(_e(m.get("converged", "—")))]
            cells.append(_td(_e(_guard(_dict(m.get("guard"))))))
        cells += [
            _n(_num(agreement[i] if i < len(agreement) else None)),
            _td("yes" if kept else ""),
        ]
        rows.append(_row(cells, cls="kept" if kept else ""))
    return _table(head, rows)


def _guard(g: dict) -> str:
    if not g:
        return "—"
    if not g.get("fired"):
        return f"did not fire (budget {g.get('budget')} steps)"
    return (
        f"fired ({g.get('signal')}) at step {g.get('step')} of {g.get('budget')}: "
        f"the refinement was stopped and {g.get('kept')} kept"
    )


def _stages(report: dict) -> str:
    stages = _dict(report.get("stage_seconds"))
    rows = []
    for name, seconds in stages.items():
        part = name.endswith("_start") or name == "refinement"  # parts of clustering
        text = (
            f"{method_label(name.removesuffix('_start'))} start"
            if name.endswith("_start")
            else name
        )
        rows.append(_row([_td(_e(text), "sub" if part else ""), _n(_num(seconds, 2))]))
    if report.get("compile_seconds") is not None:
        compiled = _num(report["compile_seconds"], 2)
        rows.append(_row([_td("compiling the training program"), _n(compiled)]))
    steps = report.get("steps_per_second")
    note = f"<p>{_num(steps, 0)} training steps per second.</p>" if steps else ""
    return _table(["stage", "seconds"], rows) + note


def _flat(section: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for key, value in section.items():
        if isinstance(value, dict):
            out += _flat(value, f"{prefix}{key}.")
        else:
            out.append((prefix + key, value))
    return out


def _config(report: dict) -> str:
    data = {k: report.get(k) for k in ("dataset", "n", "input_dim", "image_shape", "seeds", "lrs")}
    data["fingerprint"] = report.get("fingerprint")
    parts = []
    for title, section in [("data", data)] + [
        (s, _dict(report.get(s))) for s in ("model", "train", "cluster")
    ]:
        rows = [
            _row([_td(_e(k)), _td(_e(v if isinstance(v, str) else json.dumps(v)))])
            for k, v in _flat(section)
        ]
        parts.append(f"<div><h3>{_e(title)}</h3>" + _table(["field", "value"], rows) + "</div>")
    return '<div class="config">' + "".join(parts) + "</div>"


def _command(report: dict) -> str:
    command = _dict(report.get("command"))
    argv = command.get("argv")
    if not argv:
        return (
            "<p>No command line was recorded: the run was started from Python, or by a "
            "jaxae older than run pages. The configuration above reproduces it.</p>"
        )
    line = shlex.join(str(a) for a in argv)
    if command.get("cwd"):
        line = f"cd {shlex.quote(str(command['cwd']))} && {line}"
    return (
        f"<pre>{_e(line)}</pre><p>Run it with another <code>--out</code> (or add "
        "<code>--force</code> to replace this run). On the same CPU it gives the same "
        "scores again; on another machine one seed's scores can differ, means over "
        "<code>--seeds</code> less.</p>"
    )


def page(report: dict, figures: Mapping[str, bytes]) -> str:
    """The page of a run: ``report`` is its report.json, ``figures`` its PNGs by file name
    (in the order shown). Every string from the report is escaped."""
    method = str(report.get("method", "?"))
    title = f"{label('autoencoder_' + method.replace('-', '_'))} on {report.get('dataset', '?')}"
    r = report.get
    sub = (
        f"{r('n')} images of {r('input_dim')} values, {r('epochs')} epochs, "
        f"batch {r('batch_size')}, {r('models_trained')} model(s); "
        f"{_dict(r('model')).get('dtype', '?')} on {r('backend')} ({r('device_kind')}); "
        f"jaxae {r('jaxae_version')}, JAX {r('jax_version')}"
    )
    body = [f"<h1>{_e(title)}</h1>", f'<p class="sub">{_e(sub)}</p>', '<p id="broken" hidden></p>']
    body.append("<h2>Scores</h2>")
    consensus = _dict(report.get("consensus"))
    by_lr = _dict(report.get("metrics_by_lr")) or {
        str(report.get("lr")): _dict(report.get("metrics"))
    }
    several_models = (report.get("models_trained") or 1) > 1
    if not any(by_lr.values()):
        body.append("<p>The data has no labels: nothing was scored.</p>")
    for lr, metrics in by_lr.items():
        metrics = _dict(metrics)
        if not metrics:
            continue
        if len(by_lr) > 1:
            body.append(f"<h3>lr {_e(lr)}</h3>")
        selected = str(report.get("lr")) == lr
        kept = _dict(consensus.get("metrics")) if selected else None
        body.append(_scores(metrics, kept, "side by side" if consensus.get("models") else "kept"))
        body.append(_per_seed(metrics, consensus.get("seed") if selected else None))
    if several_models and consensus.get("models"):
        body.append(
            f"<p>The run's clusters: {_e(consensus.get('rule', ''))}. They are drawn below, "
            "and predict encodes new images with the same models and assigns them the same "
            f"way. Kept model (its encoder, loss and reconstructions): model "
            f"{_e(consensus.get('model'))} (seed {_e(consensus.get('seed'))}).</p>"
        )
    elif several_models and consensus:
        body.append(
            f"<p>Kept: model {_e(consensus.get('model'))} (seed {_e(consensus.get('seed'))}), "
            f"{_e(consensus.get('rule', ''))}: its clusters are drawn below, and predict "
            "assigns new images to them.</p>"
        )
    body += ["<h2>Models</h2>", _models(report), "<h2>Stage times</h2>", _stages(report)]
    body.append("<h2>Figures</h2>")
    for name, png in figures.items():
        uri = "data:image/png;base64," + base64.b64encode(png).decode()
        caption = CAPTIONS.get(name, "")
        body.append(
            f'<figure><img src="{uri}" alt="{_e(name)}"><figcaption>{_e(caption)} '
            f"({_e(name)})</figcaption></figure>"
        )
    body += ["<h2>Configuration</h2>", _config(report), "<h2>Command</h2>", _command(report)]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{STYLE}</style><script>{SCRIPT}</script></head>\n"
        "<body>\n" + "\n".join(b for b in body if b) + "\n</body></html>\n"
    )


def write_page(
    path: str | os.PathLike, report: dict, folder: str | os.PathLike, names: list[str]
) -> None:
    """Write the page of the run in ``folder`` to ``path`` atomically, with the figures
    ``names`` (files in ``folder``) embedded."""
    figures = {name: (Path(folder) / name).read_bytes() for name in names}
    atomic_write(path, page(report, figures).encode())
