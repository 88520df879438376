"""Small generated point-cloud datasets for the training tests."""

from __future__ import annotations

import numpy as np


def shapes(n: int, n_points: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two classes of planar clouds, each moved by a random rotation and translation:
    points on a unit circle (label 1) or on a segment of length 2 (label 0), with noise.
    Returns coords (n, n_points, 2), labels (n,)."""
    gen = np.random.default_rng(seed)
    t = gen.uniform(0, 2 * np.pi, (n, n_points))
    labels = gen.integers(0, 2, n)
    circle = np.stack([np.cos(t), np.sin(t)], -1)
    line = np.stack([t / np.pi - 1, np.zeros_like(t)], -1)
    x = np.where(labels[:, None, None] == 1, circle, line)
    th = gen.uniform(0, 2 * np.pi, n)
    rot = np.stack([np.stack([np.cos(th), -np.sin(th)], -1),
                    np.stack([np.sin(th), np.cos(th)], -1)], -2)
    x = np.einsum("bij,bnj->bni", rot, x) + 2 * gen.standard_normal((n, 1, 2))
    return x + 0.02 * gen.standard_normal(x.shape), labels


def radii(n: int, n_points: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Regression: clouds on circles of random radius in [0.5, 2] (randomly moved); the target
    is the radius. Returns coords (n, n_points, 2), targets (n, 1)."""
    gen = np.random.default_rng(seed)
    r = gen.uniform(0.5, 2, n)
    t = gen.uniform(0, 2 * np.pi, (n, n_points))
    x = r[:, None, None] * np.stack([np.cos(t), np.sin(t)], -1)
    return x + gen.standard_normal((n, 1, 2)), r[:, None]


def write_npz(path, coords, **arrays) -> str:
    np.savez(path, coords=coords, **arrays)
    return str(path)
