"""PyTorch peers, written as a PyTorch user trains an autoencoder: a per-batch loop.

- ``torch-eager``: ``nn.Sequential`` of ``nn.Linear``, ``loss.backward()``,
  ``opt.step()``, each batch indexed from a ``torch.randperm`` (as rymc/n2d's PyTorch
  ports and most tutorials do);
- ``torch-compile``: the same with the forward and loss under ``torch.compile``
  (CUDA graphs on a GPU).

torch is imported when a peer is prepared, never at import.
"""

from __future__ import annotations

import time
import warnings

from jaxae.bench.peers.common import Workload, first_line, init_params, numpy_loss


class _Torch:
    def __init__(self, workload: Workload, *, compiled: bool):
        import torch

        self.w = workload
        self._torch = torch
        self._compiled = compiled
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self._dev, self._cuda = dev, dev.type == "cuda"
        layers = []
        init = init_params(workload.recipe.widths(workload.x.shape[1]), workload.seed)
        for (w, b), act in zip(init, workload.recipe.activations(), strict=True):
            linear = torch.nn.Linear(*w.shape)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(w.T))
                linear.bias.copy_(torch.from_numpy(b))
            layers += [linear, torch.nn.ReLU()] if act == "relu" else [linear]
        self.model = torch.nn.Sequential(*layers).to(dev)
        self._opt = torch.optim.Adam(
            self.model.parameters(),
            lr=workload.recipe.lr,
            betas=(0.9, 0.999),
            eps=workload.recipe.eps,
        )
        self._x = torch.from_numpy(workload.x).to(dev)
        self._gen = torch.Generator(device=dev)
        self._gen.manual_seed(workload.seed)
        bf16 = workload.dtype == "bfloat16"

        def loss_fn(batch):
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                return torch.nn.functional.mse_loss(self.model(batch).float(), batch)

        if compiled:
            # CUDA graphs (reduce-overhead) remove the per-step launch cost on a GPU; a CPU
            # has none, so the default mode there.
            loss_fn = torch.compile(loss_fn, mode="reduce-overhead" if self._cuda else None)
        self._loss_fn = loss_fn
        self.device = torch.cuda.get_device_name(dev) if self._cuda else "cpu"
        start = time.perf_counter()
        self._epochs(workload.warmup_epochs)
        self.compile_seconds = time.perf_counter() - start if compiled else 0.0

    def _epochs(self, n_epochs: int) -> None:
        torch, b = self._torch, self.w.batch_size
        n = len(self.w.x)
        for _ in range(n_epochs):
            perm = torch.randperm(n, device=self._dev, generator=self._gen)
            for i in range(n // b):
                if self._compiled and self._cuda:
                    torch.compiler.cudagraph_mark_step_begin()
                loss = self._loss_fn(self._x[perm[i * b : (i + 1) * b]])
                loss.backward()
                self._opt.step()
                self._opt.zero_grad(set_to_none=True)
        if self._cuda:
            torch.cuda.synchronize()

    def run(self) -> float:
        with warnings.catch_warnings():
            if self._compiled:  # a first run without warm-up compiles here
                _quiet_torch()
            start = time.perf_counter()
            self._epochs(self.w.epochs)
            return time.perf_counter() - start

    def final_loss(self) -> float:
        linears = [m for m in self.model if isinstance(m, self._torch.nn.Linear)]
        weights = [
            (m.weight.detach().cpu().numpy().T, m.bias.detach().cpu().numpy()) for m in linears
        ]
        return numpy_loss(weights, self.w.x, self.w.recipe.activations())


def _quiet_torch() -> None:
    """torch.compile warns about its own deprecated internals and gives advice ("enable
    TF32"); none of it is the caller's to act on, and under -W error it would abort."""
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch")
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")


def _eager(workload: Workload) -> _Torch:
    return _Torch(workload, compiled=False)


def _compile(workload: Workload) -> _Torch:
    try:
        with warnings.catch_warnings():
            _quiet_torch()
            return _Torch(workload, compiled=True)
    except Exception as e:  # inductor and triton fail in many types
        raise RuntimeError(f"torch.compile failed on this machine: {first_line(e)}") from e


IMPLEMENTATIONS = {"torch-eager": _eager, "torch-compile": _compile}
