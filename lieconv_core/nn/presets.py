"""The paper's image and molecule architectures as LieResNet configurations, and the
inputs they expect (the RotMNIST pixel grid, QM9 atom features)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..groups import SE2, SE3, as_group
from ..groups.base import Group
from .resnet import LieResNet

#: atomic numbers of the QM9 elements H, C, N, O, F
QM9_CHARGES = (1, 6, 7, 8, 9)


def image_grid(size: int = 28, crop_radius: float = 15.0) -> np.ndarray:
    """The pixel centres of a square image inside a disc, as 2-D points.

    Parameters
    ----------
    size : int, default 28
        Pixels per side; the centres form the grid ``linspace(-size/2, size/2, size)`` squared.
    crop_radius : float, default 15.0
        Keep the centres with ‖x‖ < crop_radius.

    Returns
    -------
    numpy.ndarray, shape (m, 2)
        The kept centres, row-major; (648, 2) for 28×28 (no pixel at the origin).
        :func:`image_mask_index` gives the matching pixel indices.
    """
    axis = np.linspace(-size / 2, size / 2, size)
    xy = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)
    return xy[np.linalg.norm(xy, axis=-1) < crop_radius]


def image_mask_index(size: int = 28, crop_radius: float = 15.0) -> np.ndarray:
    """Flat pixel indices (row-major) of the points :func:`image_grid` keeps."""
    axis = np.linspace(-size / 2, size / 2, size)
    xy = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)
    return np.nonzero(np.linalg.norm(xy, axis=-1) < crop_radius)[0]


def image_lieresnet(group: Group | str | None = None, chin: int = 1, num_targets: int = 10,
                    k: int = 128, total_ds: float = 0.1, fill: float = 0.1, nbhd: int = 25,
                    num_layers: int = 6, liftsamples: int | None = None, bn: bool = True,
                    mean: bool = True, knn: bool = False, cache: bool = False) -> LieResNet:
    """The paper's RotMNIST LieResNet.

    Layer i keeps ``ds_frac = total_ds^(1/L)`` of the points, with neighbourhood fill
    ``fill / ds_frac^i`` and ``int(k / ds_frac^(i/2))`` channels. The paper's configuration is the
    default with SE(2), ``liftsamples=2`` (about 0.59 M parameters).

    Parameters
    ----------
    group : Group or str, optional
        The symmetry; default ``SE2(alpha=0.05)``.
    chin : int, default 1
        Input channels (grey levels).
    num_targets : int, default 10
        Output logits.
    k : int, default 128
        Channels of the first layer.
    total_ds : float, default 0.1
        Fraction of the points left after the last layer.
    fill : float, default 0.1
        Neighbourhood fill fraction of the first layer.
    nbhd : int, default 25
        Neighbours per query.
    num_layers : int, default 6
        Residual blocks.
    liftsamples : int, optional
        Lift samples per point; default 2 for groups with a random lift, else 1.
    bn : bool, default True
        Masked batch norm in the blocks.
    mean : bool, default True
        Mean (True) or sum aggregation.
    knn : bool, default False
        Nearest-neighbour instead of ball neighbourhoods.
    cache : bool, default False
        Reuse the neighbourhoods of the first layer where the points do not change.

    Returns
    -------
    LieResNet
        The model configuration (call ``init`` for its weights).
    """
    group = as_group(group) if group is not None else SE2(0.05)
    ds = total_ds ** (1 / num_layers)
    fills = [fill / ds**i for i in range(num_layers)]
    ks = [int(k / ds ** (i / 2)) for i in range(num_layers + 1)]
    ns = liftsamples if liftsamples is not None else (2 if group.random_lift else 1)
    return LieResNet(chin, num_outputs=num_targets, k=ks, nbhd=nbhd, ds_frac=ds, bn=bn,
                     num_layers=num_layers, mean=mean, liftsamples=ns, fill=fills, group=group,
                     knn=knn, cache=cache)


def molecule_features(charges: Any) -> np.ndarray:
    """QM9 input features from atomic numbers.

    Parameters
    ----------
    charges : array_like of int, shape (bs, n)
        Atomic numbers, 0 for padding.

    Returns
    -------
    numpy.ndarray, shape (bs, n, 15)
        one_hot(H, C, N, O, F) ⊗ [1, z/9, (z/9)²] in float64; padding rows are zero.
    """
    z = np.asarray(charges)
    onehot = (z[..., None] == np.asarray(QM9_CHARGES)).astype(np.float64)
    powers = np.stack([np.ones_like(z, dtype=np.float64), z / 9, (z / 9) ** 2], axis=-1)
    return (onehot[..., :, None] * powers[..., None, :]).reshape(*z.shape, 15)


def molecule_lieresnet(group: Group | str | None = None, num_targets: int = 1, k: int = 1536,
                       num_layers: int = 6, nbhd: int | None = None, fill: float | None = None,
                       liftsamples: int | None = None, bn: bool = True, mean: bool = True
                       ) -> LieResNet:
    """The paper's QM9 LieResNet (15 input features, :func:`molecule_features`).

    Parameters
    ----------
    group : Group or str, optional
        The symmetry; default ``SE3(alpha=0.2)``.
    num_targets : int, default 1
        Regression targets.
    k : int, default 1536
        Channels.
    num_layers : int, default 6
        Residual blocks.
    nbhd : int, optional
        Neighbours per query; default 25 for groups with a random lift (SE(3), SO(3)), else 100.
    fill : float, optional
        Neighbourhood fill fraction; default 0.5 with a random lift, else 1.
    liftsamples : int, optional
        Lift samples per point; default 4 with a random lift, else 1.
    bn : bool, default True
        Masked batch norm in the blocks.
    mean : bool, default True
        Mean (True) or sum aggregation.

    Returns
    -------
    LieResNet
        The model configuration.
    """
    group = as_group(group) if group is not None else SE3(0.2)
    rand = group.random_lift
    nbhd = nbhd if nbhd is not None else (25 if rand else 100)
    fill = fill if fill is not None else (0.5 if rand else 1.0)
    ns = liftsamples if liftsamples is not None else (4 if rand else 1)
    return LieResNet(15, num_outputs=num_targets, k=k, nbhd=nbhd, ds_frac=1.0, bn=bn,
                     num_layers=num_layers, mean=mean, liftsamples=ns, fill=fill, group=group)


def count_params(params: dict) -> int:
    """Total number of scalars in a parameter tree.

    Parameters
    ----------
    params : dict
        Nested dicts of arrays.

    Returns
    -------
    int
        The sum of the arrays' sizes.
    """
    from .module import tree_leaves

    return int(sum(math.prod(leaf.shape) for leaf in tree_leaves(params)))
