"""The numpy adapter: the reference contract with numpy's in-place fast paths.

Each override computes the reference's arithmetic (same results, bit for bit) with the in-place
ufuncs of :mod:`lieconv_core._numpy_fast`, and falls back to :class:`ReferenceAdapter` where its
preconditions do not hold (mixed dtypes, non-Euclidean groups).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .adapter import ReferenceAdapter
from .neighbourhoods.kernels import NativeKernels
from .neighbourhoods.primitives import QUANT, fps_start
from .rows import offset_rows


class NumpyAdapter(ReferenceAdapter):
    """:class:`ReferenceAdapter` for numpy arrays, with in-place fast paths."""

    name = "numpy"

    def device(self, xp: Any, name: str | None = None) -> Any:
        """None (numpy arrays live on the host and take no device), or RuntimeError for any
        device other than "cpu".

        Parameters
        ----------
        xp : module
            The numpy namespace.
        name : str or None
            "cpu" or None.

        Returns
        -------
        None
        """
        if name not in (None, "cpu"):
            raise RuntimeError(f"numpy has only the host (cpu), not {name!r}")
        return None

    def from_host(self, xp: Any, a: Any, dtype: Any, device: Any) -> Any:
        """``a`` as a numpy array of ``dtype`` (numpy takes no device before 2.0).

        Parameters
        ----------
        xp : module
            The numpy namespace.
        a : numpy.ndarray
            Host values.
        dtype : dtype
            The dtype.
        device : object or None
            Ignored (the host).

        Returns
        -------
        numpy.ndarray
        """
        return xp.asarray(a, dtype=dtype)

    def native_kernels(self, group: Any) -> Any:
        """The in-place FPS loop for groups whose distance is Euclidean on the elements.

        Parameters
        ----------
        group : Group
            The group.

        Returns
        -------
        NativeKernels or None
            :class:`_EuclideanFps` where ``group.euclidean_distance`` holds, else None.
        """
        return _EuclideanFps() if group.euclidean_distance else None

    def contract(self, xp: Any, w: Any, values: Any, nbr_idx: Any, nbr_mask: Any,
                 weight_major: bool = False) -> Any:
        """The contraction of :meth:`ReferenceAdapter.contract`, gathered in cache-sized blocks.

        Parameters
        ----------
        xp : module
            The array namespace.
        w : array, shape (bs, m, k, cm)
            Weight-net outputs.
        values : array, shape (bs, n, c)
            Point values (finite).
        nbr_idx : array of int, shape (bs, m, k)
            Neighbour indices.
        nbr_mask : array of bool, shape (bs, m, k), or None
            Valid neighbours (None: w is already zero at invalid slots).
        weight_major : bool
            Flatten (cm, c) instead of (c, cm).

        Returns
        -------
        array, shape (bs, m, c·cm)
        """
        if w.dtype != values.dtype:
            return super().contract(xp, w, values, nbr_idx, nbr_mask, weight_major)
        if nbr_mask is not None and not self.all_true(xp, nbr_mask):
            w = xp.where(nbr_mask[..., None], w, xp.zeros_like(w))
        from ._numpy_fast import blocked_contract  # the same products, gathered in blocks

        bs, m, k, cm = w.shape
        n, c = values.shape[1], values.shape[2]
        partial = blocked_contract(
            np.reshape(w, (bs * m, k, cm)), np.reshape(values, (bs * n, c)),
            np.reshape(offset_rows(xp, nbr_idx, n), (bs * m, k)), weight_major,
            lambda shape: np.empty(shape, w.dtype),
            lambda src, idx, out: np.take(src, idx, axis=0, out=out),
            lambda a, b, out: np.matmul(a, b, out=out))
        return np.reshape(partial, (bs, m, cm * c))

    def weightnet(self, xp: Any, layers: list, emb: Any) -> Any:
        """The weight net of :meth:`ReferenceAdapter.weightnet`, computed in place.

        Parameters
        ----------
        xp : module
            The array namespace.
        layers : list of (array, array)
            ``(W (d_in, d_out), b (d_out,))`` per layer.
        emb : array, shape (..., d)
            Pair embeddings.

        Returns
        -------
        array, shape (..., cm)
        """
        if all(t.dtype == emb.dtype for wb in layers for t in wb):
            from ._numpy_fast import weightnet  # the same arithmetic, in place

            return weightnet(layers, emb)
        return super().weightnet(xp, layers, emb)


class _EuclideanFps(NativeKernels):
    """FPS of :func:`lieconv_core.neighbourhoods.fps` for Euclidean distances on 1 to 4 element
    coordinates, through the in-place ufunc loop of :func:`lieconv_core._numpy_fast.euclidean_fps`
    (the same arithmetic, the same indices)."""

    def fps(self, xp: Any, elems: Any, q: Any, mask: Any, m: int, u: Any) -> Any:
        if elems.shape[-1] > 4:
            return None
        from ._numpy_fast import euclidean_fps

        cur, _ = fps_start(xp, mask, u, elems.dtype)
        scale = QUANT["float32" if elems.dtype == xp.float32 else "float64"]
        return euclidean_fps(elems, mask, m, cur, scale)


ADAPTER = NumpyAdapter()
