"""PyTorch eager on the CPU, written the usual way: `nn.Sequential`, a loss from
`torch.nn.functional`, `zero_grad(set_to_none=True)`, `backward`, `opt.step()`.

- `torch`: `torch.optim.Adam` with its defaults (on CPU tensors that is the
  single-tensor for-loop implementation: PyTorch picks foreach only on CUDA);
- `torch_foreach`: `Adam(..., foreach=True)`;
- `torch_fused`: `Adam(..., fused=True)` (a fused CPU kernel since PyTorch 2.4);
- `torch_1t`, `torch_fused_1t`: the default and fused Adam with one intra-op
  thread. The others use `torch.set_num_threads(os.cpu_count())`; on a
  machine whose other work keeps every core busy, OpenMP's barriers make
  small ops many times slower with 2 threads than with 1, so the 1-thread
  variants show PyTorch at its best there.

Images are NCHW, PyTorch's default layout (the cnn's dense weight is permuted
to the CHW flatten order once). Each runner sets its thread count when it runs.
Peak memory is the profiler's memory timeline (every live tensor, by category)
over one step, its maximum.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from peers.hand import LR
from peers.runner import Runner, cycle
from peers.workloads import CNN_CONVS, Workload, nchw_dense_weight, nhwc_dense_weight

CORES = os.cpu_count() or 1


def build(wl: Workload, weights: list) -> nn.Sequential:
    """The workload's model as an `nn.Sequential` holding `weights`.

    Example:
        >>> from peers.pytorch import build
        >>> from peers.workloads import Workload, init_weights
        >>> wl = Workload("t", "mlp", (2, 4, 1), 8, "mse", 1, 1)
        >>> build(wl, init_weights(wl))
        Sequential(
          (0): Linear(in_features=2, out_features=4, bias=True)
          (1): ReLU()
          (2): Linear(in_features=4, out_features=1, bias=True)
        )
    """
    if wl.kind == "cnn":
        layers: list[nn.Module] = []
        for k, cin, cout in CNN_CONVS:
            layers += [nn.Conv2d(cin, cout, k), nn.ReLU(), nn.MaxPool2d(2)]
        model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(weights[-1][0].shape[1], weights[-1][0].shape[0]))
        arrays = [(w.transpose(3, 2, 0, 1), b) for w, b in weights[:-1]] + [(nchw_dense_weight(weights[-1][0]), weights[-1][1])]
    else:
        n = len(weights)
        layers = []
        for i, (w, _) in enumerate(weights):
            layers.append(nn.Linear(w.shape[1], w.shape[0]))
            if i < n - 1:
                layers.append(nn.ReLU())
        model = nn.Sequential(*layers)
        arrays = weights
    with torch.no_grad():
        for layer, (w, b) in zip([m for m in model if hasattr(m, "weight")], arrays):
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
            layer.bias.copy_(torch.from_numpy(np.ascontiguousarray(b)))
    return model


def canonical(wl: Workload, model: nn.Sequential) -> list:
    """The model's weights back in the canonical layout."""
    layers = [m for m in model if hasattr(m, "weight")]
    out = [(l.weight.detach().numpy().copy(), l.bias.detach().numpy().copy()) for l in layers]
    if wl.kind == "cnn":
        out = [(w.transpose(2, 3, 1, 0), b) for w, b in out[:-1]] + [(nhwc_dense_weight(out[-1][0]), out[-1][1])]
    return out


class TorchAdam(Runner):
    """One eager step: zero_grad, forward, loss, backward, Adam step."""

    name = "torch"
    options: dict[str, Any] = {}
    threads = CORES
    step_only = True  # see the module docstring: the epoch workload runs the 1-thread variants

    def __init__(self, wl: Workload, weights: list, data: tuple) -> None:
        self.wl = wl
        self.model = build(wl, weights)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LR, **self.options)
        x, y = data
        if wl.kind == "cnn":
            x = x.transpose(0, 1, 4, 2, 3)
        self.batches = [(torch.from_numpy(np.ascontiguousarray(x[i])), torch.from_numpy(np.ascontiguousarray(y[i])))
                        for i in range(x.shape[0])]
        self.loss = F.mse_loss if wl.loss == "mse" else F.cross_entropy  # cross_entropy takes one-hot (probability) targets

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One training step; returns the detached loss."""
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss(self.model(x), y)
        loss.backward()
        self.opt.step()
        return loss.detach()

    def run(self, k: int) -> list:
        torch.set_num_threads(self.threads)
        step, out = self.step, []
        for x, y in cycle(self.batches, k):
            out.append(step(x, y))
        return out

    def wait(self, out: Any) -> None:
        """Eager CPU work is done when the call returns."""

    def losses(self, out: Any) -> np.ndarray:
        return np.asarray([float(v) for v in out])

    def params(self) -> list:
        return canonical(self.wl, self.model)

    def memory(self) -> dict[str, Any] | None:
        from torch.profiler import ProfilerActivity, profile

        x, y = self.batches[0]
        torch.set_num_threads(self.threads)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                         with_stack=True) as prof:
                self.step(x, y)
            with tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, "timeline.json")
                try:
                    prof.export_memory_timeline(path, device="cpu")
                except Exception:
                    return None
                with open(path) as f:
                    _, sizes = json.load(f)
        return {"bytes": int(max(sum(s) for s in sizes)), "how": "torch profiler memory timeline (live tensors)"}


class TorchForeach(TorchAdam):
    """`torch.optim.Adam(..., foreach=True)`."""

    name = "torch_foreach"
    options = {"foreach": True}
    step_only = True


class TorchFused(TorchAdam):
    """`torch.optim.Adam(..., fused=True)`."""

    name = "torch_fused"
    options = {"fused": True}
    step_only = True


class TorchOneThread(TorchAdam):
    """The default Adam with `torch.set_num_threads(1)`."""

    name = "torch_1t"
    threads = 1
    step_only = False


class TorchFusedOneThread(TorchFused):
    """`Adam(..., fused=True)` with `torch.set_num_threads(1)`."""

    name = "torch_fused_1t"
    threads = 1
    step_only = False


IMPLS = {c.name: c for c in (TorchAdam, TorchForeach, TorchFused, TorchOneThread, TorchFusedOneThread)}
