"""Run folders: claimed for the life of a run, written atomically, report and page last.

``RunFolder`` claims ``--out`` (an exclusive lock held until the run ends, so a
second run on it refuses), refuses to replace anything that is not a jaxae run,
and cleans the temporary files a killed run left. ``write_checkpoint`` saves a
run's state into it; ``save_run`` writes the final checkpoint, the figures,
``report.json`` and then its page ``index.html`` (``jaxae.run_page``) last, so a
folder with a report is a finished run and one with a page is a complete one. When
each is called (the run's life, its stages and resumes) is ``jaxae.lifecycle``'s
business.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
from pathlib import Path

import jax
import numpy as np

from jaxae._files import RUN_MARKER, atomic_write, run_folder_of, save_npy, write_json
from jaxae.checkpoint import FILENAME, encoder_params, load_checkpoint, save_checkpoint
from jaxae.cluster import METHODS
from jaxae.config import ExperimentConfig
from jaxae.encoder import Encoder
from jaxae.errors import JaxaeError
from jaxae.experiment import Experiment, augmentation
from jaxae.figures import (
    augmentation_figure,
    clusters_figure,
    codes_figure,
    confusion_figure,
    loss_figure,
    reconstructions_figure,
)
from jaxae.methods import Refinement
from jaxae.preprocess import scale
from jaxae.run_page import CAPTIONS, PAGE, write_page
from jaxae.saved_clusters import (
    CLUSTERER,
    DIGEST,
    OLD_CLUSTERERS,
    SavedClusters,
    clusterer_bytes,
    digest,
)

MARKER = RUN_MARKER
LOCK = ".jaxae-lock"
REPORT = "report.json"
FIGURES = tuple(CAPTIONS)  # every figure a run can write, in its page's order
LABELS = "clusters.npy"  # the selected model's cluster of every training image
RUN_FILES = {MARKER, LOCK, REPORT, PAGE, FILENAME, LABELS, CLUSTERER, *OLD_CLUSTERERS, *FIGURES}


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and ".tmp" in name


def _is_leftover(name: str) -> bool:
    return name in (MARKER, LOCK) or _is_temporary(name)


def _is_run_folder(path: Path) -> bool:
    names = {p.name for p in path.iterdir()}
    return bool(names & {MARKER, FILENAME, REPORT}) and all(
        n in RUN_FILES or _is_temporary(n) for n in names
    )


def check_out_dir(
    out: str | os.PathLike, *, force: bool = False, protect: tuple[Path, ...] = ()
) -> Path:
    """Refuse an output folder that holds files, unless ``force`` and it is a jaxae run.

    ``force`` never replaces the working directory or a folder above it, nor a
    folder that holds anything but a jaxae run's files, nor one of ``protect``
    (the dataset's own files).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise JaxaeError(f"out={out} is a file: pass a folder name")
    outer = run_folder_of(out, include_self=False)
    if outer is not None:
        raise JaxaeError(
            f"out={out} is inside the jaxae run folder {outer}, which only its run writes: "
            "pass a folder outside it"
        )
    if not (out.is_dir() and any(not _is_leftover(p.name) for p in out.iterdir())):
        return out  # new, empty, or only what a run that saved nothing left
    if not force:
        raise JaxaeError(
            f"out={out} already holds files: pass another folder, force=True to replace a run "
            f"there, or resume={out} to continue it"
        )
    real, cwd = out.resolve(), Path.cwd().resolve()
    if out.is_symlink():
        raise JaxaeError(f"out={out} is a symbolic link: pass the folder itself, or another one")
    if real == cwd or real in cwd.parents:
        raise JaxaeError(
            f"out={out} is the working directory or a folder above it: force=True replaces "
            "only run folders; pass another folder"
        )
    for path in protect:
        path = path.resolve()
        if path == real or real in path.parents:
            raise JaxaeError(f"out={out} holds the dataset {path}: pass another folder for the run")
    if not _is_run_folder(out):
        raise JaxaeError(
            f"out={out} holds files that are not a jaxae run: force=True replaces only run "
            "folders; pass another folder"
        )
    return out


class RunFolder:
    """A run's folder, claimed by ``claim()`` just before training.

    ``claim`` makes the folder, takes an exclusive lock on it (released when the
    process ends), removes the temporary files of a killed run, and checks that
    the disk has room for ``reserve`` bytes; ``ready`` clears a run replaced with
    ``force`` at the first write. A run
    that fails before anything is saved leaves no folder behind (``release``).
    ``command``: the command line that started the run (``{"argv": [...], "cwd": ...}``),
    or None; every checkpoint keeps it, and report.json and the page show it.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        force: bool = False,
        resume: bool = False,
        protect: tuple[Path, ...] = (),
        command: dict | None = None,
    ):
        self.path = Path(path) if resume else check_out_dir(path, force=force, protect=protect)
        self.command = command
        self._name = "resume" if resume else "out"  # the parameter (and flag) the user passed
        self._clear = force and not resume
        self._lock = None
        self._made = False

    def claim(self, *, reserve: int = 0) -> Path:
        if self._lock is not None or jax.process_index() != 0:  # process 0 alone writes
            return self.path
        try:
            self._made = not self.path.exists()
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock = open(self.path / LOCK, "a")
        except OSError as e:
            raise _write_error(self.path, e) from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            self._lock = None
            raise JaxaeError(
                f"{self._name}={self.path} is in use by another jaxae run: wait for it"
                + (", or pass another folder" if self._name == "out" else "")
            ) from None
        try:
            self._prepare(reserve)
        except BaseException:
            self.release()
            raise
        return self.path

    def _prepare(self, reserve: int) -> None:
        """Clean a killed run's temporary files, mark the folder, check the room."""
        for p in self.path.iterdir():  # what a killed run left
            if _is_temporary(p.name):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        try:
            (self.path / MARKER).touch()
        except OSError as e:
            raise _write_error(self.path, e) from None
        free = shutil.disk_usage(self.path).free
        if free < reserve:
            raise JaxaeError(
                f"{self._name}={self.path} has {free / 1e6:.1f} MB free, a checkpoint needs "
                f"{reserve / 1e6:.1f} MB: free disk space or pass another folder"
            )

    def ready(self) -> Path:
        """The claimed folder, for writing; a run replaced with ``force`` is cleared first,
        at this first write, so a run that fails before saving anything replaces nothing."""
        self.claim()
        if self._clear:
            for p in self.path.iterdir():
                if p.name not in (LOCK, MARKER):
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
            self._clear = False
        return self.path

    def close(self) -> None:
        """Release the claim (the lock); the process ending releases it too."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def release(self) -> None:
        """After a failure with nothing saved: remove a folder this run made, if empty."""
        self.close()
        if not self.path.is_dir():
            return
        if self._made and not any(p.name not in (LOCK, MARKER) for p in self.path.iterdir()):
            shutil.rmtree(self.path, ignore_errors=True)


def _write_error(path: Path, e: OSError) -> JaxaeError:
    where = e.filename or path
    return JaxaeError(
        f"cannot write {where}: {e.strerror or e}; free disk space, fix the folder's "
        "permissions, or pass another folder"
    )


def checkpoint_bytes(experiment_config: ExperimentConfig) -> int:
    """About how many bytes a checkpoint of this run takes (parameters and Adam's moments)."""
    models = experiment_config.seeds * len(experiment_config.lr_list)
    # Parameters and Adam's two moments; DEC/IDEC adds the refined copy and its optimiser.
    copies = 5 if METHODS[experiment_config.cluster.method].refines_encoder else 3
    return (
        copies * 4 * experiment_config.model.parameter_count * models
        + 4 * models * (experiment_config.train.epochs)
        + (1 << 16)
    )


def run_meta(config: ExperimentConfig, fingerprint: str, train_seconds: float = 0.0) -> dict:
    """What a checkpoint keeps beside the model to continue the run exactly."""
    return {
        "data": dataclasses.asdict(config.data),
        "cluster": config.cluster.to_dict(),
        "seeds": config.seeds,
        "lrs": list(config.lr_list),
        "devices": config.devices,
        "checkpoint_every": config.checkpoint_every,
        "fingerprint": fingerprint,
        "train_seconds": train_seconds,
    }


def write_checkpoint(
    folder: RunFolder,
    config: ExperimentConfig,
    state,
    history: np.ndarray,
    epoch: int,
    chunk: int,
    run: dict,
    selected: int = 0,
    stage: str | None = None,
    refinement: Refinement | None = None,
) -> None:
    """Save a run's state into its folder; a write error is one line naming the folder."""
    r = refinement
    if folder.command is not None:
        run = {**run, "command": folder.command}
    try:
        save_checkpoint(
            folder.ready(),
            state,
            model_config=config.model,
            train_config=config.train,
            loss_history=history,
            epoch=epoch,
            models=[(s, lr) for s in config.seed_list for lr in config.lr_list],
            chunk=chunk,
            selected=selected,
            run=run,
            stage=stage,
            refine=None if r is None else r.state,
            refine_step=0 if r is None else r.step,
            refine_models=None if r is None else r.models,
        )
    except OSError as e:
        raise _write_error(folder.path, e) from None


def save_run(experiment: Experiment, folder: RunFolder) -> Path:
    """Write the final checkpoint, the figures, report.json and index.html (last) into the
    folder. report.json is the experiment's report with the folder's ``command``."""
    if jax.process_index() != 0:
        return folder.path
    try:
        return _save_run(experiment, folder)
    except OSError as e:
        raise _write_error(folder.path, e) from None


def _save_run(experiment: Experiment, folder: RunFolder) -> Path:
    out = folder.ready()
    ds, res, config, report = (
        experiment.dataset,
        experiment.result,
        experiment.config,
        experiment.report,
    )
    clustering = experiment.kept
    clusterer = clusterer_bytes(clustering)
    # The final checkpoint vouches for clusterer.npz: predict refuses any other bytes.
    run = {**run_meta(config, report.fingerprint, res.train_seconds), DIGEST: digest(clusterer)}
    epochs, chunk, selected = config.train.epochs, experiment.chunk, experiment.selected
    write_checkpoint(
        folder, config, res.state, res.loss_history, epochs, chunk, run, selected,
        stage="writing", refinement=experiment.refinement,
    )  # fmt: skip
    chosen = report.models[experiment.selected]
    metrics = chosen.get("metrics", {})
    acc = next(iter(metrics.values()), {}).get("acc") if metrics else None
    name = Path(ds.name).name
    method = clustering.method
    members = getattr(clustering.fitted, "models", None)
    if members is not None:  # several models' codes side by side
        acc = next(iter(report.consensus.get("metrics", {}).values()), {}).get("acc")
        method = f"{method} on {len(members)} models' codes side by side"
    elif method != config.cluster.method:  # the refinement guard kept the start
        method = f"{method} (the start of {config.cluster.method}, kept by its guard)"
    if members is None:
        method = f"{method} on autoencoder codes"
    title = f"{method}, {name}" + (f", ACC {acc:.3f}" if acc else "")
    clusters_figure(
        ds.images, experiment.clusters, ds.image_shape, out / "clusters.png", title=title
    )
    loss_figure(res.loss_history, out / "loss.png", selected=experiment.selected)
    encoder = experiment.encoder
    sample = ds.images[:10]
    reconstructions_figure(
        np.asarray(scale(sample, config.model.scaling, config.model.data_range)),
        encoder.reconstruct(sample),
        ds.image_shape,
        out / "reconstructions.png",
    )
    augmented = augmentation(config)  # what it did to the inputs, drawn
    if augmented is not None and config.model.image_shape is not None:
        augmentation_figure(
            np.asarray(scale(ds.images[:6], config.model.scaling, config.model.data_range)),
            config.model.image_shape,
            out / "augmented.png",
            config=augmented,
            seed=config.train.seed,
            title=f"inputs as they are (left) and augmented (shift {augmented.shift:g}, "
            f"rotate {augmented.rotate:g}°)",
        )
    codes = encoder.encode(ds.images)
    codes_figure(codes, experiment.clusters, out / "codes.png", title=title)
    if ds.labels is not None:
        confusion_figure(
            ds.labels, experiment.clusters, out / "confusion.png", title=title,
            label_names=ds.class_names,
        )  # fmt: skip
    save_npy(out / LABELS, np.asarray(clustering.labels, np.int64))
    if clusterer is not None:  # what jaxae.load(...).predict needs (umap-learn's: nothing)
        atomic_write(out / CLUSTERER, clusterer)
    finished = {**report.to_dict(), "command": folder.command}
    write_json(out / REPORT, finished)
    _write_page(out, finished)
    return out


def _write_page(out: Path, report: dict) -> None:
    write_page(out / PAGE, report, out, [name for name in FIGURES if (out / name).is_file()])


def save_missing_page(folder: RunFolder) -> bool:
    """Write the page of a finished run whose folder lacks one (a run stopped between
    its report and its page, or written before runs had pages), from its report.json
    and figures; True when it wrote one."""
    if jax.process_index() != 0 or (folder.path / PAGE).is_file():
        return False
    folder.claim()
    try:
        report = json.loads((folder.path / REPORT).read_text())
        if not isinstance(report, dict):
            raise ValueError("not a JSON object")
        _write_page(folder.path, report)
    except ValueError as e:
        raise JaxaeError(
            f"{folder.path / REPORT} is damaged ({e}): train again with jaxae run"
        ) from None
    except OSError as e:
        raise _write_error(folder.path, e) from None
    finally:
        folder.close()
    return True


def load(run_dir: str | os.PathLike) -> Encoder:
    """Load a trained run's encoder, with its clusters when the run saved them.

    Example::

        ae = jaxae.load("runs/my-run")
        codes = ae.encode(images)   # (N, 784) -> (N, 100) float32
        clusters = ae.predict(images)
    """
    ckpt = load_checkpoint(run_dir)
    folder = Path(run_dir) if Path(run_dir).is_dir() else Path(run_dir).parent
    params = encoder_params(ckpt, ckpt.selected)
    members = None
    if len(ckpt.models) > 1:  # a clusterer of the codes side by side predicts with them
        every = [encoder_params(ckpt, m) for m in range(len(ckpt.models))]
        members = jax.tree.map(lambda *a: np.stack(a), *every)
    clusterer = None
    if ckpt.run.get("cluster"):  # read when it first predicts: encoding never opens it
        finished = (folder / REPORT).is_file()
        clusterer = SavedClusters(
            folder, ckpt.run, code_dim=ckpt.model_config.code_dim, finished=finished,
            models=len(ckpt.models),
        )  # fmt: skip
    return Encoder(params, ckpt.model_config, clusterer=clusterer, members=members)
