"""Named recipes: field values for the model, training and clustering configs.

Every preset is data; :func:`apply_preset` builds the configs from it, and any
field given explicitly (a CLI flag, an estimator's keyword) overrides it. It is
the one place where a preset and its overrides meet: ``jaxae run`` and both
scikit-learn estimators call it.

- ``seed``: the original experiment (784-256-100-256-784, ReLU code, per-image
  standardisation, Adam 0.01, batch 100, 500 epochs, KMeans n_init 3).
- ``dec``: DEC (Xie et al. 2016) as XifengGuo/DEC-keras trains MNIST: d-500-500-2000-10
  with a linear code on pixels / 255, SGD lr 1.0 momentum 0.9, batch 256, 300 epochs,
  DEC's initialiser; KMeans n_init 20, then DEC refinement (at most 20,000 steps,
  DEC-keras' budget, as ``idec`` and ``dec-da``; the other presets refine for at most
  100 passes over the data, ``jaxae.cluster_options.MAX_PASSES``).
- ``idec``: the same pretraining, then IDEC (Guo et al. 2017; KL weight 0.1).
- ``dec-da``: DEC with data augmentation (Guo et al., ACML 2018; XifengGuo/DEC-DA,
  ``FcDEC.py``, ``run_exp.py``): the ``dec`` model and optimiser, 500 pretraining
  epochs on batches shifted by up to 10% and turned by up to 10 degrees, KMeans
  n_init 20 on the clean codes, then DEC whose Q comes from augmented batches and P
  from the clean images (update interval 140, their MNIST-70,000 setting; they
  used 30 on the 10,000 test digits and USPS: ``--update-interval 30``).
- ``dec-da-fast``: ``n2d-fast``'s pretraining (Adam 0.001, 100 epochs) on DEC-DA's
  augmented batches, then DEC-DA with DEC-DA's update interval for the 10,000 test
  digits (30): this project's pick for the CPU, chosen on the MNIST test digits
  (docs/results-mnist.md).
- ``n2d-da``: DEC-DA's 500 epochs of ``dec-da-fast``'s augmented pretraining, then
  N2D's clusters of the codes (UMAP and the best of 10 Gaussian mixtures, as
  ``n2d-fast``) as the start of IDEC-DA (update interval 30; IDEC's Adam 0.001 and
  KL weight 0.1), whose reconstruction term keeps a cluster from collapsing into
  its neighbour as DEC-DA's lone KL term can: this project's best preset, chosen
  on the MNIST test digits (docs/results-mnist.md).
- ``n2d-da-fast``: ``dec-da-fast``'s 100 epochs of augmented pretraining, then the
  same start and DEC-DA (update interval 30): the CPU pick, about 3 minutes a seed
  on a 2-core CPU (docs/results-mnist.md).
- ``n2d``: N2D (McConville et al. 2020, rymc/n2d): d-500-500-2000-10 with a linear
  code on pixels / 255, Adam 1e-3, batch 256, 1,000 epochs; UMAP to 10 dimensions
  (20 neighbours, min_dist 0), then a full-covariance Gaussian mixture.
- ``n2d-fast``: N2D's recipe with 100 pretraining epochs and the best of 10
  Gaussian-mixture initialisations (by likelihood, no labels): this project's
  pick, in minutes on a laptop CPU (docs/results-mnist.md).
"""

from __future__ import annotations

from typing import Any

_WIDE = {"hidden": (500, 500, 2000), "code_dim": 10, "code_activation": "linear", "scaling": "unit"}

# n2d-fast's pretraining on batches augmented as DEC-DA's.
_FAST_DA = {
    "optimizer": "adam", "lr": 1e-3, "batch_size": 256, "epochs": 100, "shift": 0.1, "rotate": 10.0,
}  # fmt: skip

# N2D's clusters of the codes as the start of a refinement on DEC-DA's augmented batches.
_N2D_DA_REFINE = {"shift": 0.1, "rotate": 10.0, "update_interval": 30, "start": "umap-gmm"}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "seed": {"model": {}, "train": {}, "cluster": {}},
    "dec": {
        "model": {**_WIDE, "kernel_init": "dec_uniform"},
        "train": {"optimizer": "sgd", "lr": 1.0, "momentum": 0.9, "batch_size": 256, "epochs": 300},
        "cluster": {"method": "dec", "n_init": 20, "refine": {"max_steps": 20000}},
    },
    "idec": {
        "model": {**_WIDE, "kernel_init": "dec_uniform"},
        "train": {"optimizer": "sgd", "lr": 1.0, "momentum": 0.9, "batch_size": 256, "epochs": 300},
        "cluster": {"method": "idec", "n_init": 20, "refine": {"max_steps": 20000}},
    },
    "dec-da": {
        "model": {**_WIDE, "kernel_init": "dec_uniform"},
        "train": {
            "optimizer": "sgd",
            "lr": 1.0,
            "momentum": 0.9,
            "batch_size": 256,
            "epochs": 500,
            "shift": 0.1,
            "rotate": 10.0,
        },
        "cluster": {
            "method": "dec",
            "n_init": 20,
            "refine": {"shift": 0.1, "rotate": 10.0, "max_steps": 20000},
        },
    },
    "dec-da-fast": {
        "model": dict(_WIDE),
        "train": dict(_FAST_DA),
        "cluster": {
            "method": "dec",
            "n_init": 20,
            "refine": {"shift": 0.1, "rotate": 10.0, "update_interval": 30},
        },
    },
    "n2d-da": {
        "model": dict(_WIDE),
        "train": {**_FAST_DA, "epochs": 500},
        "cluster": {
            "method": "idec",
            "n_init": 10,
            "refine": dict(_N2D_DA_REFINE),
        },
    },
    "n2d-da-fast": {
        "model": dict(_WIDE),
        "train": dict(_FAST_DA),
        "cluster": {
            "method": "dec",
            "n_init": 10,
            "refine": dict(_N2D_DA_REFINE),
        },
    },
    "n2d": {
        "model": dict(_WIDE),
        "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 256, "epochs": 1000},
        "cluster": {"method": "umap-gmm", "n_init": 1},
    },
    "n2d-fast": {
        "model": dict(_WIDE),
        "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 256, "epochs": 100},
        "cluster": {"method": "umap-gmm", "n_init": 10},
    },
}
DEFAULT_PRESET = "seed"


def preset_fields(name: str) -> dict[str, dict[str, Any]]:
    """The fields a preset sets, per config (``model``, ``train``, ``cluster``)."""
    from jaxae._validate import check_choice

    check_choice("preset", name, tuple(PRESETS))
    return {k: dict(v) for k, v in PRESETS[name].items()}


def apply_preset(
    name: str,
    *,
    model: dict[str, Any] | None = None,
    train: dict[str, Any] | None = None,
    cluster: dict[str, Any] | None = None,
    input_dim: int = 1,
    seed: int = 0,
):
    """The (ModelConfig, TrainConfig, ClusterConfig) of preset ``name`` with overrides.

    Args:
      name: a key of ``PRESETS``.
      model, train, cluster: fields to set over the preset's; a value of None
        keeps the preset's (so unset flags and keywords can be passed as they are).
        A method's options are a dict, merged field by field:
        ``cluster={"umap": {"neighbors": 15}}``.
      input_dim: the data's width (``jaxae run`` leaves 1 and fills it from the data).
      seed: the first seed, for training and clustering alike.

    Example::

        model, train, cluster = apply_preset("n2d-fast", train={"epochs": 20}, input_dim=784)
    """
    from jaxae.config import ClusterConfig, ModelConfig, TrainConfig

    fields = preset_fields(name)
    for section, given in (("model", model), ("train", train), ("cluster", cluster)):
        _merge(fields[section], given or {})
    return (
        ModelConfig(input_dim=input_dim, **fields["model"]),
        TrainConfig(seed=seed, **fields["train"]),
        ClusterConfig(seed=seed, **fields["cluster"]),
    )


def _merge(fields: dict[str, Any], given: dict[str, Any]) -> None:
    """Set ``given``'s values over ``fields``, a dict (a method's options) field by field;
    None keeps the preset's value."""
    for key, value in given.items():
        if isinstance(value, dict):
            fields[key] = dict(fields.get(key) or {})
            _merge(fields[key], value)
        elif value is not None:
            fields[key] = value


def describe(name: str) -> str:
    """One line: the preset's fields, for ``jaxae run --help``."""

    def parts(fields: dict[str, Any], prefix: str = ""):
        for k, v in fields.items():
            yield from parts(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}={v}"]

    return ", ".join(p for section in PRESETS[name].values() for p in parts(section)) or (
        "the defaults"
    )
