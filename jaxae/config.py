"""Frozen configuration, one dataclass per concern.

Defaults reproduce the original recipe: 784-256-100-256-784 (ReLU code,
per-image standardisation), Adam lr 0.01 (epsilon 1e-7), batch 100, 500 epochs,
KMeans into 10 clusters (n_init 3). Named recipes that change several fields at
once are in ``jaxae.presets``. Each class has a ``tiny()`` variant for tests.
Errors name the parameter (``batch_size=``); the CLI maps them onto its flags.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
from collections.abc import Mapping, Sequence

from jaxae._validate import MAX_STEPS, check_choice, check_image_size, check_int, check_real, is_int
from jaxae.cluster_options import (
    METHOD_NAMES,
    OPTION_SECTIONS,
    GMMOptions,
    KMeansOptions,
    RefineOptions,
    UMAPOptions,
)
from jaxae.errors import JaxaeError

DTYPES = ("float32", "bfloat16")
SCALINGS = ("standardize", "unit")
CODE_ACTIVATIONS = ("relu", "linear")
KERNEL_INITS = (
    "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_normal", "dec_uniform",
)  # fmt: skip
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine")
# Two billion float32 parameters (8 GB, 24 GB with Adam's state): far above any
# model this recipe needs, and far below what a typo like --hidden 2147483648 asks for.
MAX_PARAMETERS = 2**31
SEED_LIMIT = 2**32  # seeds are uint32, as scikit-learn's random_state requires
MAX_N_INIT = 1000  # KMeans restarts; each one reruns KMeans from scratch
DEFAULT_N = 3000  # jaxae run's default: the original's mnist.data[:3000]


def check_seed(seed, name: str = "seed") -> int:
    return check_int(name, seed, minimum=0, maximum=SEED_LIMIT - 1)


def _check_range(value) -> tuple[float, float]:
    """``data_range`` as a (lo, hi) pair of finite floats with lo < hi."""
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
        raise JaxaeError(f"data_range must be a (min, max) pair, got {value!r}")
    lo, hi = (check_real("data_range", v) for v in value)
    if not lo < hi:
        raise JaxaeError(f"data_range must have min < max, got {value!r}")
    return lo, hi


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """The autoencoder's shape, input scaling and compute dtype.

    Attributes:
      input_dim: pixels per image (784 for MNIST, 64 for scikit-learn digits).
      hidden: widths of the hidden layers from the input towards the code
        (an int is one layer); the decoder mirrors them.
      code_dim: size of the code.
      code_activation: ``"relu"`` (the original recipe) or ``"linear"`` (DEC, N2D).
      scaling: ``"standardize"`` (each image to mean 0, std 1; the original) or
        ``"unit"`` (the training data's range onto [0, 1], as DEC and N2D feed
        MNIST: pixels / 255 for 0..255 images; see ``jaxae.preprocess``).
      data_range: for ``"unit"``, the training data's ``(min, max)``; ``None``
        until fitted (``jaxae.fit`` and ``jaxae run`` fit it on the training
        images and keep it with the model).
      image_shape: ``(H, W)`` the rows were flattened from, ``(H, W, 3)`` for RGB
        (``jaxae run`` takes the dataset's); what augmentation (``TrainConfig.shift``,
        ``rotate``) needs, of greyscale images.
      kernel_init: Glorot-uniform by default; ``"dec_uniform"`` is DEC-keras'
        variance scaling (scale 1/3, fan-in, uniform).
      dtype: compute dtype, ``"float32"`` or ``"bfloat16"``; parameters are
        always float32.
    """

    input_dim: int = 784
    hidden: tuple[int, ...] = (256,)
    code_dim: int = 100
    code_activation: str = "relu"
    scaling: str = "standardize"
    data_range: tuple[float, float] | None = None
    image_shape: tuple[int, int] | None = None
    kernel_init: str = "glorot_uniform"
    dtype: str = "float32"

    def __post_init__(self):
        hidden = self.hidden
        if is_int(hidden):
            hidden = (hidden,)
        if not isinstance(hidden, Sequence) or isinstance(hidden, str):
            raise JaxaeError(f"hidden must be a list of layer widths, got {self.hidden!r}")
        hidden = tuple(check_int("hidden", h, minimum=1) for h in hidden)
        object.__setattr__(self, "hidden", hidden)
        for name in ("input_dim", "code_dim"):
            check_int(name, getattr(self, name), minimum=1)
        check_choice("code_activation", self.code_activation, CODE_ACTIVATIONS)
        check_choice("scaling", self.scaling, SCALINGS)
        if self.data_range is not None:
            object.__setattr__(self, "data_range", _check_range(self.data_range))
        if self.image_shape is not None:
            shape = self.image_shape
            colour = isinstance(shape, Sequence) and len(shape) == 3 and shape[2] == 3
            if not isinstance(shape, Sequence) or not (len(shape) == 2 or colour):
                raise JaxaeError(f"image_shape must be (H, W) or (H, W, 3), got {shape!r}")
            shape = tuple(check_int("image_shape", s, minimum=1) for s in shape)
            object.__setattr__(self, "image_shape", shape)
        check_choice("kernel_init", self.kernel_init, KERNEL_INITS)
        check_choice("dtype", self.dtype, DTYPES)
        if self.parameter_count > MAX_PARAMETERS:
            shape = "-".join(map(str, (self.input_dim, *self.hidden, self.code_dim)))
            raise JaxaeError(
                f"a {shape} autoencoder has {self.parameter_count:,} parameters, over jaxae's "
                f"limit of {MAX_PARAMETERS:,}: pass a smaller hidden= or code_dim="
            )

    @property
    def widths(self) -> tuple[int, ...]:
        """Layer widths of the encoder, input to code: (input_dim, *hidden, code_dim)."""
        return (self.input_dim, *self.hidden, self.code_dim)

    @property
    def parameter_count(self) -> int:
        w = self.widths
        weights = sum(a * b for a, b in itertools.pairwise(w))
        return 2 * weights + sum(w[1:]) + sum(w[:-1])

    @classmethod
    def tiny(cls, input_dim: int = 64) -> ModelConfig:
        return cls(input_dim=input_dim, hidden=16, code_dim=8)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How the autoencoder is trained.

    Attributes:
      epochs: passes over the data.
      batch_size: images per step. Each epoch is shuffled and cut into
        ``n // batch_size`` full batches; the remainder of that epoch's
        permutation is dropped (a different remainder every epoch).
      optimizer: ``"adam"`` (the original) or ``"sgd"`` (with ``momentum``).
      lr: peak learning rate.
      eps: Adam epsilon (Keras' default, 1e-7).
      momentum: SGD momentum (0 for none).
      schedule: ``"constant"``, or ``"cosine"`` decay from ``lr`` to 0 over the run.
      shift, rotate: augmentation of every batch on the device (DEC-DA: 0.1 and
        10): each image moved by up to ``shift`` of its width and height and turned
        by up to ``rotate`` degrees, drawn per image and step from the run's seed
        (``jaxae.augment``); 0 and 0 (the default) train on the images as they are.
      seed: seeds initialisation, shuffling and augmentation.
    """

    epochs: int = 500
    batch_size: int = 100
    optimizer: str = "adam"
    lr: float = 0.01
    eps: float = 1e-7
    momentum: float = 0.9
    schedule: str = "constant"
    shift: float = 0.0
    rotate: float = 0.0
    seed: int = 0

    def __post_init__(self):
        check_int("epochs", self.epochs, minimum=1, maximum=MAX_STEPS)
        _ = self.augment  # its own checks of shift and rotate
        check_int("batch_size", self.batch_size, minimum=1)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        if (
            not isinstance(self.lr, (int, float))
            or isinstance(self.lr, bool)
            or not (0 < self.lr < math.inf)
        ):
            raise JaxaeError(
                f"lr must be a positive, finite learning rate, got {self.lr!r}: pass lr=0.01 or so"
            )
        check_real("eps", self.eps)
        check_real("momentum", self.momentum, minimum=0.0, maximum=1.0)
        check_seed(self.seed)

    @property
    def augment(self):
        """The ``jaxae.augment.AugmentConfig`` of ``shift`` and ``rotate``."""
        from jaxae.augment import AugmentConfig

        return AugmentConfig(shift=self.shift, rotate=self.rotate, scale=0.0, shear=0.0)

    @classmethod
    def tiny(cls) -> TrainConfig:
        return cls(epochs=3, batch_size=32)


# ClusterConfig's flat fields before the sections (report.json and checkpoints of
# older runs): old name -> (section, field).
FLAT_CLUSTER_FIELDS = {
    "max_iter": ("kmeans", "max_iter"),
    "tol": ("kmeans", "tol"),
    "kmeans_backend": ("kmeans", "backend"),
    "umap_dim": ("umap", "dim"),
    "umap_neighbors": ("umap", "neighbors"),
    "umap_min_dist": ("umap", "min_dist"),
    "update_interval": ("refine", "update_interval"),
    "dec_tol": ("refine", "tol"),
    "max_steps": ("refine", "max_steps"),
    "gamma": ("refine", "gamma"),
    "dec_lr": ("refine", "lr"),
    "dec_batch_size": ("refine", "batch_size"),
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClusterConfig:
    """How the codes are clustered.

    What every method shares is here; each method's own options are a section
    (:mod:`jaxae.cluster_options`), given as its dataclass or a dict of its fields:
    ``ClusterConfig(method="umap-gmm", umap={"neighbors": 15})``.

    Attributes:
      method: ``"kmeans"`` (scikit-learn's k-means++ with the original's options),
        ``"gmm"`` (a Gaussian mixture), ``"dec"`` / ``"idec"`` (KMeans, then the
        encoder refined with DEC's clustering loss, IDEC keeping the
        reconstruction loss), ``"umap-gmm"`` (N2D: UMAP, then a Gaussian mixture).
      clusters: how many clusters.
      n_init: KMeans restarts (also for the centres DEC starts from) and
        Gaussian-mixture initialisations; the best is chosen without labels.
      seed: the clustering's random state.
      kmeans: :class:`jaxae.cluster_options.KMeansOptions` (max_iter, tol, backend):
        KMeans, DEC/IDEC's starting centres and the KMeans pixel baseline.
      gmm: :class:`jaxae.cluster_options.GMMOptions` (backend): the mixture of ``gmm``
        and ``umap-gmm``.
      umap: :class:`jaxae.cluster_options.UMAPOptions` (dim, neighbors, min_dist,
        backend, epochs).
      refine: :class:`jaxae.cluster_options.RefineOptions` (update_interval, tol,
        max_steps, gamma, lr, batch_size): DEC and IDEC.
    """

    method: str = "kmeans"
    clusters: int = 10
    n_init: int = 3
    seed: int = 0
    kmeans: KMeansOptions = dataclasses.field(default_factory=KMeansOptions)
    gmm: GMMOptions = dataclasses.field(default_factory=GMMOptions)
    umap: UMAPOptions = dataclasses.field(default_factory=UMAPOptions)
    refine: RefineOptions = dataclasses.field(default_factory=RefineOptions)

    def __post_init__(self):
        check_choice("method", self.method, METHOD_NAMES)
        check_int("clusters", self.clusters, minimum=1)
        check_int("n_init", self.n_init, minimum=1, maximum=MAX_N_INIT)
        check_seed(self.seed)
        for section, cls in OPTION_SECTIONS.items():
            value = getattr(self, section)
            if isinstance(value, Mapping):
                unknown = sorted(set(value) - {f.name for f in dataclasses.fields(cls)})
                if unknown:
                    raise JaxaeError(
                        f"{section} has no option {unknown[0]!r}: use "
                        f"{', '.join(f.name for f in dataclasses.fields(cls))}"
                    )
                value = cls(**value)
            elif not isinstance(value, cls):
                raise JaxaeError(
                    f"{section} must be a {cls.__name__} or a dict of its fields, got {value!r}"
                )
            object.__setattr__(self, section, value)
        self.refine.for_method(self.method)  # refuses an lr the method would not use

    def to_dict(self) -> dict:
        """The config as a run records it (report.json, checkpoints): nested dicts, with
        the learning rate DEC or IDEC really refines with in ``refine.lr``."""
        return {
            **dataclasses.asdict(self),
            "refine": dataclasses.asdict(self.refine.for_method(self.method)),
        }

    @classmethod
    def from_dict(cls, fields: Mapping) -> ClusterConfig:
        """The config ``to_dict`` wrote (report.json, checkpoints), sections
        nested; an older run's flat fields (``umap_dim``, ``dec_tol``, ...) are read too."""
        fields = dict(fields)
        sections: dict[str, dict] = {s: dict(fields.pop(s, None) or {}) for s in OPTION_SECTIONS}
        for old, (section, name) in FLAT_CLUSTER_FIELDS.items():
            if old in fields:
                sections[section].setdefault(name, fields.pop(old))
        # A run saved before the JAX backends became the default names none or
        # saved the backend it used; one that names none used the reference.
        sections["umap"].setdefault("backend", "umap-learn")
        sections["gmm"].setdefault("backend", "sklearn")
        if "lr" in sections["refine"]:
            lr = RefineOptions.recorded_lr(fields.get("method"), sections["refine"]["lr"])
            sections["refine"]["lr"] = lr
        return cls(**fields, **sections)

    @classmethod
    def tiny(cls) -> ClusterConfig:
        return cls(n_init=1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Which images: a dataset name or path, how many, and where downloads are cached.

    ``n=None`` takes the first ``DEFAULT_N`` (3,000) images where there are more,
    like the original ``mnist.data[:3000]``; ``n="all"`` takes every image.
    ``image_size=(H, W)`` resizes the images of a folder (``jaxae.data.load_dataset``).
    """

    source: str = "digits"
    n: int | str | None = None
    data_dir: str | None = None
    image_size: tuple[int, int] | None = None

    def __post_init__(self):
        if not isinstance(self.source, (str, os.PathLike)) or not str(self.source):
            raise JaxaeError(f"source must be a dataset name or path, got {self.source!r}")
        if self.n not in (None, "all"):
            check_int("n", self.n, minimum=1)
        if self.image_size is not None:  # a list, as report.json and checkpoints keep it
            object.__setattr__(self, "image_size", check_image_size(self.image_size))

    @classmethod
    def tiny(cls) -> DataConfig:
        return cls(source="digits", n=256)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExperimentConfig:
    """A whole run: data, model, training, clustering, and which models to train.

    ``seeds`` models (seeds ``seed .. seed + seeds - 1``) times the learning rates
    in ``lrs`` (default: ``train.lr``) train together in one program.
    """

    data: DataConfig = DataConfig()
    model: ModelConfig | None = None  # None: ModelConfig() with the data's input_dim
    train: TrainConfig = TrainConfig()
    cluster: ClusterConfig = dataclasses.field(default_factory=ClusterConfig)
    seeds: int = 1
    lrs: tuple[float, ...] | None = None
    devices: int | str | None = None
    checkpoint_every: int | None = None

    def __post_init__(self):
        check_int("seeds", self.seeds, minimum=1)
        last = self.train.seed + self.seeds - 1
        if last >= SEED_LIMIT:
            raise JaxaeError(
                f"seeds must be between 0 and 2**32-1, but seed={self.train.seed} "
                f"seeds={self.seeds} reaches {last}: pass seeds={SEED_LIMIT - self.train.seed} "
                "or fewer"
            )
        if self.lrs is not None:
            object.__setattr__(self, "lrs", tuple(self.lrs))
            for lr in self.lrs:
                dataclasses.replace(self.train, lr=lr)  # TrainConfig's own check
        if self.checkpoint_every is not None:
            check_int("checkpoint_every", self.checkpoint_every, minimum=1, maximum=MAX_STEPS)
        if self.devices not in (None, "all"):
            check_int("devices", self.devices, minimum=1)

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.train.seed, self.train.seed + self.seeds))

    @property
    def lr_list(self) -> list[float]:
        return list(self.lrs or (self.train.lr,))
