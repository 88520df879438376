"""The original implementation (github.com/mfinzi/LieConv) as one more column of the workload
benchmarks: its models on the same host batches, timed in the same asv run as this library.

The original is not a dependency. It takes part where ``LIECONV_ORIGINAL_SRC`` names a directory
from which its ``lie_conv`` package imports (for the springs model, olive-oil-ml's ``oil`` and
torchdiffeq must import too); everywhere else its benchmarks are skipped.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import numpy as np

from lieconv_core.nn.presets import image_mask_index

#: environment variable naming the directory the original's ``lie_conv`` package imports from
ORIGINAL_ENV = "LIECONV_ORIGINAL_SRC"
#: the ``backend`` parameter value of the original's column (torch, CPU, float32, eager)
ORIGINAL = "original"


def original_modules(*names: str) -> list[Any]:
    """Import modules of the original's ``lie_conv`` package (``"lieConv"``, ``"lieGroups"``, ...)
    from :data:`ORIGINAL_ENV`; NotImplementedError (asv: skipped) where it is unset or they do
    not import from there."""
    src = os.environ.get(ORIGINAL_ENV)
    if not src:
        raise NotImplementedError(f"set {ORIGINAL_ENV} to a directory holding the original's "
                                  "lie_conv package")
    if not os.path.isdir(os.path.join(src, "lie_conv")):
        raise NotImplementedError(f"{ORIGINAL_ENV}={src!r} holds no lie_conv package")
    sys.path.insert(0, src)
    try:
        return [importlib.import_module(f"lie_conv.{name}") for name in names]
    except ImportError as exc:
        raise NotImplementedError(f"the original does not import from {src!r}: {exc}") from exc
    finally:
        sys.path.remove(src)


def _original_model(name: str) -> Any:
    """The original's model of a paper workload (``qm9_T3``, ``qm9_SE3``, ``rotmnist_T2``,
    ``rotmnist_SE2``), configured as :func:`_common.workload` configures this library's."""
    lieconv, groups = original_modules("lieConv", "lieGroups")
    kind, group = name.split("_")
    if kind == "rotmnist":
        g, ns = {"T2": (groups.T(2), 1), "SE2": (groups.SE2(0.05), 2)}[group]
        return lieconv.ImgLieResnet(chin=1, total_ds=0.1, num_layers=6, group=g, fill=0.1,
                                    k=128, nbhd=25, liftsamples=ns)
    if group == "T3":
        return lieconv.LieResNet(15, num_outputs=1, k=256, nbhd=100, fill=1.0, num_layers=6,
                                 liftsamples=1, group=groups.T(3))
    return lieconv.LieResNet(15, num_outputs=1, k=256, nbhd=25, fill=0.5, num_layers=6,
                             liftsamples=4, group=groups.SE3(0.2))


def _image(values: np.ndarray) -> np.ndarray:
    """The (bs, 1, 28, 28) image whose centre crop, in the original's pixel order, holds the
    point values (bs, 648, 1) of :func:`_common.image_batch`."""
    bs = values.shape[0]
    img = np.zeros((bs, 28 * 28), np.float32)
    img[:, image_mask_index()] = values[..., 0]
    return img.reshape(bs, 1, 28, 28)


class OriginalRunner:
    """Forward and training-step closures of the original's model of a workload, with the same
    interface as :class:`_common.Runner`: eval-mode forward under ``no_grad``; a training step
    of the workload's loss (L1 / cross-entropy), backward and ``torch.optim.Adam`` (lr 3e-3).
    The image model caches its lifted grid and FPS indices after its first call, as it does in
    the original's training."""

    def __init__(self, name: str, inputs: tuple, targets: np.ndarray, loss: str):
        import torch

        torch.manual_seed(0)
        self.torch = torch
        self.model = _original_model(name)
        coords, values, mask = (np.asarray(a) for a in inputs)
        if name.startswith("rotmnist"):
            self.inputs: tuple = (torch.as_tensor(_image(values)),)
        else:
            self.inputs = ((torch.as_tensor(coords, dtype=torch.float32),
                            torch.as_tensor(values, dtype=torch.float32),
                            torch.as_tensor(mask)),)
        dtype = torch.float32 if loss == "l1" else torch.long
        self.targets = torch.as_tensor(np.asarray(targets), dtype=dtype)
        self.loss = (torch.nn.functional.l1_loss if loss == "l1"
                     else torch.nn.functional.cross_entropy)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=3e-3)

    def forward(self) -> Any:
        self.model.eval()
        with self.torch.no_grad():
            return self.model(*self.inputs)

    def step(self) -> Any:
        self.model.train()
        self.opt.zero_grad()
        loss = self.loss(self.model(*self.inputs), self.targets)
        loss.backward()
        self.opt.step()
        return loss.detach()
