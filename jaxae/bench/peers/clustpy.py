"""ClustPy as a peer: its autoencoder, N2D, DEC and IDEC, set up as jaxae's.

ClustPy (Leiber et al., github.com/collinleiber/ClustPy; PyTorch, scikit-learn-style
deep clustering) is the optional extra ``jaxae[peers]``. Here:

- ``clustpy``: pretraining ClustPy's ``FeedforwardAutoencoder`` with its own ``fit``
  (the loop its DEC, IDEC and N2D pretrain with), timed by the same harness as every
  peer (``jaxae bench --sections dec``);
- :func:`n2d_on_codes`: ClustPy's ``N2D`` (umap-learn, then scikit-learn's
  ``GaussianMixture``) on given codes, its network the identity: the clustering
  stage alone (``jaxae bench --sections clustering``);
- :func:`fit_method`: ClustPy's ``N2D``, ``DEC`` or ``IDEC`` from pixels to labels
  (bench/clustpy_peer.py).

The model is DEC's and N2D's d-500-500-2000-10 (``DEC_RECIPE``):
``FeedforwardAutoencoder([d, 500, 500, 2000, 10], activation_fn=torch.nn.ReLU)``, ReLU
on the hidden layers and, as jaxae's, a linear code and a linear output (ClustPy's
``FullyConnectedBlock`` puts no activation after a block's last layer, and
``decoder_output_fn`` is None). Set to what jaxae does, where ClustPy takes it:

- loss: the MSE averaged over all elements (``torch.nn.functional.mse_loss``).
  ClustPy's default, ``mean_squared_error``, sums over features and averages over
  rows: d times larger, which Adam all but ignores, but which would weigh IDEC's
  reconstruction d times more against its clustering loss;
- first weights: Glorot-uniform kernels, zero biases (``init_params``, as every peer);
  torch's ``nn.Linear`` draws both from U(+-1/sqrt(fan_in));
- Adam lr 1e-3 with eps 1e-7 (ClustPy: torch's 1e-8); batches of 256 from ClustPy's
  ``get_dataloader(..., drop_last=True)``: N // 256 full batches an epoch, as
  ``jaxae.fit`` (ClustPy's own loaders keep the short last batch);
- IDEC's refinement Adam lr 1e-3, jaxae's (ClustPy: 1e-4); KMeans' and the mixture's
  restarts ``n_init``, jaxae's (ClustPy: scikit-learn's defaults, one each).

Left as ClustPy has them (its DEC follows the paper, jaxae's DEC-keras):

- DEC's refinement optimiser: Adam lr 1e-4 (ClustPy's ``optimizer_class`` is also
  the pretraining's); jaxae's SGD lr 0.01 momentum 0.9;
- the target P: ClustPy's from each batch's own Q at every step, on shuffled
  batches; jaxae's from all the data every 140 steps, batches in data order, and a
  stop on ``tol`` (the benchmark gives jaxae ``tol`` 0, so both run the same steps);
- ClustPy's DEC/IDEC ``labels_`` are a final KMeans on the refined codes,
  ``dec_labels_`` the clustering layer's argmax, as jaxae's labels;
- per step ClustPy's loop calls ``loss.item()`` (a device sync), and its loader
  indexes rows one at a time and collates them.

ClustPy's ``fit`` seeds NumPy's and Python's global generators (``set_torch_seed``).
torch and clustpy are imported when used, never at import.
"""

from __future__ import annotations

import contextlib
import io
import time

import numpy as np

from jaxae.bench.peers.common import DEC_RECIPE, Recipe, Workload, init_params, numpy_loss

METHODS = ("n2d", "dec", "idec")
UMAP = dict(n_components=10, n_neighbors=20, min_dist=0.0, metric="euclidean")


@contextlib.contextmanager
def quiet():
    """ClustPy's progress bars (stderr) and messages (stdout) kept out of the bench's log."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def _device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autoencoder(recipe: Recipe, input_dim: int, *, seed: int):
    """ClustPy's ``FeedforwardAutoencoder`` of ``recipe`` from jaxae's first weights, on
    the GPU where torch has one.

    Raises:
      RuntimeError: the recipe's code is not linear (ClustPy's always is).
    """
    import torch
    from clustpy.deep.neural_networks import FeedforwardAutoencoder

    if recipe.code_activation != "linear":
        raise RuntimeError(
            f"ClustPy's FeedforwardAutoencoder has a linear code; recipe {recipe.name!r} "
            f"has a {recipe.code_activation} one"
        )
    layers = [input_dim, *recipe.hidden, recipe.code_dim]
    model = FeedforwardAutoencoder(layers, activation_fn=torch.nn.ReLU, random_state=seed)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    weights = init_params(recipe.widths(input_dim), seed)
    with torch.no_grad():
        for linear, (w, b) in zip(linears, weights, strict=True):
            linear.weight.copy_(torch.from_numpy(w.T))
            linear.bias.copy_(torch.from_numpy(b))
    return model.to(_device())


def _loaders(x: np.ndarray, batch_size: int) -> tuple:
    """(train, test): shuffled full batches as ``jaxae.fit`` takes them, and all rows in order."""
    from clustpy.deep import get_dataloader

    return (
        get_dataloader(x, batch_size, shuffle=True, drop_last=True),
        get_dataloader(x, batch_size, shuffle=False),
    )


def _optimizer(recipe: Recipe) -> dict:
    return {"lr": recipe.lr, "eps": recipe.eps}


class _Pretrain:
    """``FeedforwardAutoencoder.fit``: each call a fresh Adam, as each ClustPy fit makes."""

    def __init__(self, workload: Workload):
        import torch

        if workload.dtype != "float32":
            raise RuntimeError("ClustPy trains in float32 only")
        self.w = workload
        self._torch = torch
        self.model = autoencoder(workload.recipe, workload.x.shape[1], seed=workload.seed)
        self._loader = _loaders(workload.x, workload.batch_size)[0]
        self._cuda = next(self.model.parameters()).is_cuda
        self.device = torch.cuda.get_device_name() if self._cuda else "cpu"
        self.compile_seconds = 0.0
        if workload.warmup_epochs:
            self._fit(workload.warmup_epochs)

    def _fit(self, epochs: int) -> None:
        with quiet():
            self.model.fit(
                n_epochs=epochs,
                optimizer_params=_optimizer(self.w.recipe),
                dataloader=self._loader,
                ssl_loss_fn=self._torch.nn.functional.mse_loss,
            )
        if self._cuda:
            self._torch.cuda.synchronize()

    def run(self) -> float:
        start = time.perf_counter()
        self._fit(self.w.epochs)
        return time.perf_counter() - start

    def final_loss(self) -> float:
        linears = [m for m in self.model.modules() if isinstance(m, self._torch.nn.Linear)]
        weights = [
            (m.weight.detach().cpu().numpy().T, m.bias.detach().cpu().numpy()) for m in linears
        ]
        return numpy_loss(weights, self.w.x, self.w.recipe.activations())


def _identity(dim: int):
    """A fitted ClustPy autoencoder whose code is its input: N2D then clusters given codes."""
    import torch
    from clustpy.deep.neural_networks import FeedforwardAutoencoder

    model = FeedforwardAutoencoder([dim, dim], activation_fn=None)
    with torch.no_grad():
        for linear in (model.encoder.block[0], model.decoder.block[0]):
            linear.weight.copy_(torch.eye(dim))
            linear.bias.zero_()
    model.fitted = True
    return model.to(_device())


def _umap_class():
    from jaxae.cluster.umap_gmm import import_umap

    return import_umap().UMAP


def n2d_on_codes(
    codes: np.ndarray, *, clusters: int, n_init: int, n_neighbors: int, seed: int = 0
) -> np.ndarray:
    """``(N,)`` labels of ClustPy's ``N2D`` on ``(N, F)`` codes: umap-learn to F dimensions
    (``n_neighbors``, min_dist 0, seeded, one thread), then scikit-learn's mixture with
    ``n_init`` restarts."""
    from clustpy.deep import N2D

    codes = np.asarray(codes, np.float32)
    umap = {**UMAP, "n_components": codes.shape[1], "n_neighbors": n_neighbors, "n_jobs": 1}
    model = N2D(
        n_clusters=clusters,
        neural_network=_identity(codes.shape[1]),
        embedding_size=codes.shape[1],
        manifold_class=_umap_class(),
        manifold_params=umap,
        initial_clustering_params={"n_init": n_init},
        random_state=seed,
    )
    with quiet():
        return np.asarray(model.fit(codes).labels_)


def fit_method(
    method: str,
    x: np.ndarray,
    *,
    clusters: int,
    pretrain_epochs: int,
    refine_epochs: int = 0,
    n_init: int = 10,
    seed: int = 0,
    recipe: Recipe = DEC_RECIPE,
) -> dict[str, np.ndarray]:
    """ClustPy's ``method`` (``"n2d"``, ``"dec"`` or ``"idec"``) on ``(N, D)`` pixels / 255.

    Pretrains ``autoencoder(recipe)`` for ``pretrain_epochs``; N2D then runs umap-learn
    (N2D's options) and the mixture; DEC and IDEC run KMeans and ``refine_epochs`` of
    N // batch steps each.

    Returns:
      ``{"labels": (N,)}``, DEC's and IDEC's clustering layer's labels (``dec_labels_``),
      and for them ``"kmeans_labels"``: ClustPy's ``labels_``, a KMeans of the refined codes.
    """
    import torch
    from clustpy.deep import DEC, IDEC, N2D

    x = np.asarray(x, np.float32)
    common = dict(
        n_clusters=clusters,
        batch_size=recipe.batch_size,
        pretrain_optimizer_params=_optimizer(recipe),
        pretrain_epochs=pretrain_epochs,
        ssl_loss_fn=torch.nn.functional.mse_loss,
        neural_network=autoencoder(recipe, x.shape[1], seed=seed),
        embedding_size=recipe.code_dim,
        custom_dataloaders=_loaders(x, recipe.batch_size),
        initial_clustering_params={"n_init": n_init},
        random_state=seed,
    )
    if method == "n2d":
        model = N2D(**common, manifold_class=_umap_class(), manifold_params={**UMAP, "n_jobs": 1})
    elif method in ("dec", "idec"):
        cls = DEC if method == "dec" else IDEC
        refine = {"lr": 1e-3} if method == "idec" else None  # jaxae's IDEC Adam; DEC ClustPy's
        model = cls(**common, clustering_epochs=refine_epochs, clustering_optimizer_params=refine)
    else:
        raise ValueError(f"unknown ClustPy method {method!r}: use one of {', '.join(METHODS)}")
    with quiet():
        model.fit(x)
    if method == "n2d":
        return {"labels": np.asarray(model.labels_)}
    return {"labels": np.asarray(model.dec_labels_), "kmeans_labels": np.asarray(model.labels_)}


IMPLEMENTATIONS = {"clustpy": _Pretrain}
