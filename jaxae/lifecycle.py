"""A run's life in its folder: claim it, pretrain, cluster, write; resume from any stage.

:func:`start` and :func:`resume` are what ``jaxae run`` calls; they return an
:class:`Outcome` for the CLI to print, or raise ``JaxaeError`` (one line). On the
way the run is checkpointed at every stage (``jaxae.checkpoint.STAGES``):

- **pretraining**: between chunks of epochs, every ``checkpoint_every`` epochs or,
  by default, at the first chunk boundary 60 s after the last save;
- **clustering**: as soon as pretraining ends, before any clustering starts, and
  then between chunks of a DEC/IDEC refinement (by the same rule, in steps);
- **writing**: the final checkpoint, before the figures, clusters, report and page.

A signal (``should_stop``) at any stage saves the latest state and returns an
``interrupted`` outcome (exit 130); ``resume`` continues from the stage the
checkpoint names: training from its epoch, a refinement from its step, and never
a stage that finished. Everything the stages compute is deterministic for a seed
on the CPU, so a resumed run ends with the same parameters, labels and scores as
one that never stopped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from jaxae.checkpoint import Checkpoint, load_checkpoint
from jaxae.config import ClusterConfig, DataConfig, ExperimentConfig
from jaxae.data import Dataset
from jaxae.errors import JaxaeError
from jaxae.experiment import (
    Experiment,
    Hooks,
    Resume,
    fingerprint,
    load_data,
    plan_chunk,
    resolve,
    run_experiment,
)
from jaxae.loop import Stopped
from jaxae.methods import Refinement, restore_refinement
from jaxae.rundir import (
    FILENAME,
    PAGE,
    REPORT,
    RunFolder,
    checkpoint_bytes,
    run_meta,
    save_missing_page,
    save_run,
    write_checkpoint,
)
from jaxae.train import TrainResult


class Outcome(NamedTuple):
    """How a call of :func:`start` or :func:`resume` ended.

    ``status`` is ``"finished"`` (``experiment`` is set), ``"already finished"`` (a
    resume of a complete run: nothing was done) or ``"interrupted"`` (a signal;
    ``message`` says what was saved and how to resume).
    """

    status: str
    folder: Path
    experiment: Experiment | None = None
    message: str = ""


class Checkpointer:
    """Saves a run's state at every stage: the hooks :func:`run_experiment` calls.

    Between chunks (of epochs, then of refinement steps) it saves when
    ``config.checkpoint_every`` epochs (or as many chunks of steps) passed since the
    last save, or, when that is None, ``every_seconds`` seconds; always when
    pretraining ends; and on demand (``save_latest``) after a stop. Only process 0
    writes.
    """

    def __init__(
        self,
        folder: RunFolder,
        config: ExperimentConfig,
        *,
        chunk: int,
        fingerprint: str,
        every_seconds: float = 60.0,
        resume: Resume | None = None,
    ):
        self.folder, self.config, self.chunk = folder, config, chunk
        self.fingerprint, self.every_seconds = fingerprint, every_seconds
        epochs = config.train.epochs
        self.latest = None  # (epoch, state, history, refinement) not saved yet
        self.saved = None if resume is None else (resume.epoch, _step(resume.refinement))
        self.saved_time = time.monotonic()
        self.prior_seconds = 0.0 if resume is None else resume.train_seconds
        self.started = time.monotonic() if resume is None or resume.epoch < epochs else None
        self.pretrained = None if resume is None or resume.epoch < epochs else (
            resume.state, resume.history
        )  # fmt: skip

    def on_chunk(self, epoch: int, state, history: np.ndarray) -> None:
        self.latest = (epoch, state, np.array(history), None)
        self._maybe_save(epoch - (self.saved[0] if self.saved else 0))

    def on_pretrained(self, result: TrainResult) -> None:
        self.prior_seconds += result.train_seconds
        self.started = None  # the training clock stops here
        self.pretrained = (result.state, result.loss_history)
        self.latest = (self.config.train.epochs, *self.pretrained, None)
        self.save_latest()

    def on_refine(self, refinement: Refinement) -> None:
        self.latest = (self.config.train.epochs, *self.pretrained, refinement)
        steps = refinement.step - (self.saved[1] if self.saved else 0)
        # checkpoint_every counts epochs; in a refinement, as many chunks of steps.
        self._maybe_save(steps, chunks=True)

    def _maybe_save(self, progress: int, *, chunks: bool = False) -> None:
        every = self.config.checkpoint_every
        if every is not None:
            due = progress >= (1 if chunks else every)
        else:
            due = time.monotonic() - self.saved_time >= self.every_seconds
        if due:
            self.save_latest()

    def save_latest(self) -> tuple[int, int] | None:
        """Save the last state seen (if not saved yet); returns (epoch, refinement step)."""
        if self.latest is None:
            return self.saved
        epoch, state, history, refinement = self.latest
        where = (epoch, _step(refinement))
        if where != self.saved and jax.process_index() == 0:
            full = np.full((history.shape[0], self.config.train.epochs), np.nan, np.float32)
            full[:, :epoch] = history[:, :epoch]
            seconds = self.prior_seconds
            if self.started is not None:  # still training: count the time since the start
                seconds += time.monotonic() - self.started
            run = run_meta(self.config, self.fingerprint, seconds)
            write_checkpoint(
                self.folder, self.config, state, full, epoch, self.chunk, run,
                refinement=refinement,
            )  # fmt: skip
        self.saved, self.saved_time, self.latest = where, time.monotonic(), None
        return where

    def hooks(self, should_stop: Callable[[], bool] | None) -> Hooks:
        return Hooks(self.on_chunk, self.on_pretrained, self.on_refine, should_stop)


def _step(refinement: Refinement | None) -> int:
    return -1 if refinement is None else refinement.step


def resume_point(run_dir: str | os.PathLike) -> tuple[ExperimentConfig, Resume, Checkpoint]:
    """The configuration and training state to continue ``run_dir`` from, and its checkpoint.

    A refinement the checkpoint holds is restored by :func:`resume` once the data
    is loaded (its state's shapes depend on the number of images).
    """
    ckpt = load_checkpoint(run_dir)
    run = ckpt.run
    try:
        config = ExperimentConfig(
            data=DataConfig(**run["data"]),
            model=ckpt.model_config,
            train=ckpt.train_config,
            cluster=ClusterConfig.from_dict(run["cluster"]),
            seeds=run["seeds"],
            lrs=tuple(run["lrs"]),
            devices=run["devices"],
            checkpoint_every=run["checkpoint_every"],
        )
    except (KeyError, TypeError) as e:
        raise JaxaeError(
            f"{run_dir} was saved without its run settings ({e}): train again with jaxae run"
        ) from None
    resume = Resume(
        ckpt.state, ckpt.epoch, ckpt.loss_history, ckpt.chunk or 1,
        float(run.get("train_seconds", 0.0)),
    )  # fmt: skip
    return config, resume, ckpt


def start(
    config: ExperimentConfig,
    *,
    out: str | os.PathLike,
    force: bool = False,
    progress: bool = True,
    should_stop: Callable[[], bool] | None = None,
    command: dict | None = None,
) -> Outcome:
    """A new run of ``config`` in the folder ``out`` (see the module docstring).

    ``command``: the command line that started it (``{"argv": [...], "cwd": ...}``),
    kept in the checkpoint and written into report.json and index.html.
    """
    dataset = load_data(config.data)
    _check_stop(should_stop)
    config = resolve(config, dataset)
    source = Path(config.data.source)
    protect = (source,) if source.exists() else ()
    folder = RunFolder(out, force=force, protect=protect, command=command)
    return _live(config, dataset, folder, None, progress, should_stop)


def load_run_data(
    run_dir: str | os.PathLike, config: ExperimentConfig, ckpt: Checkpoint
) -> tuple[ExperimentConfig, Dataset]:
    """The data of the run in ``run_dir`` (``resume_point``'s config and checkpoint),
    refused if it changed since the run began, and the config resolved against it."""
    dataset = load_data(config.data)
    if fingerprint(dataset) != ckpt.run.get("fingerprint"):
        raise JaxaeError(
            f"the data of {run_dir} ({config.data.source}) has changed since the run "
            "began: restore it, or start a new run"
        )
    return resolve(config, dataset), dataset


def resume(
    run_dir: str | os.PathLike,
    *,
    progress: bool = True,
    should_stop: Callable[[], bool] | None = None,
) -> Outcome:
    """Continue the run in ``run_dir`` from its checkpoint's stage.

    A finished run has nothing to resume; if it lacks its page (stopped after its
    report, or written before runs had pages), the page is written.
    """
    run_dir = Path(run_dir)
    config, saved, ckpt = resume_point(run_dir)
    command = ckpt.run.get("command")  # the command that started the run, not this one
    folder = RunFolder(run_dir, resume=True, command=command)
    if ckpt.stage != "pretraining" and (run_dir / REPORT).is_file():
        message = f"{run_dir} is a finished run ({saved.epoch} epochs): nothing to resume"
        if save_missing_page(folder):
            message += f"; wrote its page {run_dir / PAGE}"
        return Outcome("already finished", run_dir, message=message)
    config, dataset = load_run_data(run_dir, config, ckpt)
    _check_stop(should_stop)
    if ckpt.refine is not None:
        refinement = restore_refinement(
            ckpt.refine, ckpt.refine_step, ckpt.refine_models, ckpt.state.params,
            len(dataset.images), model_config=config.model, cluster_config=config.cluster,
        )  # fmt: skip
        saved = saved._replace(refinement=refinement)
    return _live(config, dataset, folder, saved, progress, should_stop)


def _check_stop(should_stop) -> None:
    if should_stop is not None and should_stop():
        raise Stopped("interrupted before training; nothing was saved", done=0, interrupted=True)


def _live(config, dataset, folder, saved, progress, should_stop) -> Outcome:
    """Claim the folder, run the experiment with a checkpoint at every stage, write it."""
    chunk = saved.chunk if saved is not None else plan_chunk(config, dataset)
    folder.claim(reserve=checkpoint_bytes(config))
    try:
        checkpointer = Checkpointer(
            folder, config, chunk=chunk, fingerprint=fingerprint(dataset), resume=saved
        )
        try:
            _check_stop(should_stop)
            experiment = run_experiment(
                config, dataset=dataset, resume=saved, progress=progress,
                hooks=checkpointer.hooks(should_stop),
            )  # fmt: skip
        except Stopped as e:
            where = checkpointer.save_latest()
            path = folder.path / FILENAME
            if where is None:
                folder.release()
                if e.interrupted:
                    raise
                raise JaxaeError(f"{e}; no epoch finished, so nothing was saved") from None
            epoch, step = where
            at = f"epoch {epoch}" + (f", refinement step {step}" if step >= 0 else "")
            if not e.interrupted:  # training diverged
                raise JaxaeError(f"{e}; the last finite state ({at}) is in {path}") from None
            return Outcome(
                "interrupted", folder.path,
                message=f"{e}; saved {at} in {path}; resume with: jaxae run --resume "
                f"{folder.path}",
            )  # fmt: skip
        except Exception:
            if checkpointer.saved is None:
                folder.release()
            raise
        save_run(experiment, folder)
        return Outcome("finished", folder.path, experiment)
    finally:
        folder.close()
