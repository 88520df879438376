"""The cupy adapter: the reference implementation on cupy arrays, plus the CUDA kernels of
``kernels.cu`` (loaded with ``cupy.RawModule``) for FPS, neighbour search and the fused PointConv.

Kernel coverage: FPS and neighbourhoods for the Euclidean-distance groups T(d) and Trivial(d)
(d <= 3); the fused pointconv (forward, and :meth:`CupyAdapter.pointconv_vjp` for its gradients -
cupy has no autodiff) for any group with the standard 32-32-16 weight net and <= 512 channels.
Everything else runs the reference path. ``LIECONV_CUPY_KERNELS=never`` disables the kernels.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from lieconv_core.adapter import CHUNK_ELEMS_DEVICE, CHUNK_PAIRS, ReferenceAdapter
from lieconv_core.groups import supports_group
from lieconv_core.neighbourhoods import NativeKernels
from lieconv_core.neighbourhoods.primitives import QUANT

#: the CUDA source of the kernels (compiled by NVRTC on first use; nvcc-checked in the tests)
KERNELS_CU = Path(__file__).with_name("kernels.cu")
HID, OUT, KT = 32, 16, 64
#: kernel launches by name ("fps", "ball", "knn", "pc_fwd", "pc_bwd"): the tests check that a
#: case ran the kernel itself, not the reference fallback
LAUNCHES: Counter = Counter()


class CupyAdapter(ReferenceAdapter):
    """Cupy adapter: the reference implementation on cupy arrays plus the CUDA kernels.

    The kernels of ``kernels.cu`` cover FPS and neighbour search for T(d) and Trivial(d) (d <= 3)
    and the fused pointconv with the 32-32-16 weight net; everything else runs the reference path.

    Parameters
    ----------
    kernels : str or None
        "never" disables the kernels; any other value uses them where they apply. None: the
        ``LIECONV_CUPY_KERNELS`` environment variable, default "auto".
    """
    name = "cupy"

    def __init__(self, kernels: str | None = None):
        self.kernels = kernels or os.environ.get("LIECONV_CUPY_KERNELS", "auto")
        self._module: Any = None

    def device(self, xp: Any, name: str | None = None) -> Any:
        """None (cupy's current device), after checking that a CUDA device exists.

        Parameters
        ----------
        xp : module
            The cupy namespace.
        name : str or None
            Unused: cupy works on its current device.

        Returns
        -------
        None

        Raises
        ------
        RuntimeError
            When no CUDA device is usable.
        """
        import cupy

        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # CUDARuntimeError without a driver
            raise RuntimeError(f"cupy unusable ({exc})") from exc
        if count < 1:
            raise RuntimeError("no CUDA device")
        return None

    def native_kernels(self, group: Any) -> Any:
        """The CUDA kernels' FPS and neighbour search where the group declares them
        (:func:`lieconv_core.groups.supports_group`).

        Parameters
        ----------
        group : Group
            The group.

        Returns
        -------
        NativeKernels or None
            A :class:`CupyKernels`, or None where the kernels do not cover ``group``.
        """
        return CupyKernels(self) if supports_group(group) else None

    def chunk_elems(self, x: Any) -> int:
        return CHUNK_ELEMS_DEVICE

    def chunk_pairs(self, x: Any) -> int:
        return CHUNK_PAIRS

    def compact_pairs(self, x: Any) -> bool:
        return False  # GPU: the fused kernels take the whole pair arrays, no host syncs

    def all_true(self, xp: Any, mask: Any) -> bool:
        return False  # reading it back would synchronise the device

    # --- kernel plumbing -------------------------------------------------------------------------
    def _mod(self) -> Any:
        if self._module is None:
            import cupy

            self._module = cupy.RawModule(code=KERNELS_CU.read_text(), options=("-std=c++14",))
        return self._module

    def _fn(self, name: str, dtype: Any) -> Any:
        """The compiled kernel ``name`` for ``dtype``; every caller launches it at once."""
        import cupy

        LAUNCHES[name] += 1
        suffix = "f32" if dtype == cupy.float32 else "f64"
        return self._mod().get_function(f"{name}_{suffix}")

    def _usable(self, *arrays: Any) -> bool:
        if self.kernels == "never":
            return False
        import cupy

        return all(a.dtype in (cupy.float32, cupy.float64) for a in arrays)

    @staticmethod
    def _scalar(dtype: Any, v: float) -> Any:
        import numpy as np

        return np.float32(v) if dtype == np.float32 else np.float64(v)

    # --- the kernels of :class:`CupyKernels` ----------------------------------------------------
    def _fps(self, elems, q, mask, m, u):
        if not (q is None and self._usable(elems)):
            return None
        import cupy

        bs, n, E = elems.shape
        count = cupy.cumsum(mask.astype(cupy.int64), axis=1)
        target = cupy.floor(u * count[:, -1].astype(u.dtype)).astype(cupy.int64)
        start = cupy.ascontiguousarray(cupy.argmax(count > target[:, None], axis=1))
        out = cupy.empty((bs, m), dtype=cupy.int64)
        if bs * m == 0:
            return out
        scratch = cupy.empty((bs, n), dtype=elems.dtype)
        scale = self._scalar(elems.dtype, QUANT["float32" if elems.dtype == cupy.float32
                                               else "float64"])
        self._fn("fps", elems.dtype)(
            (bs,), (256,), (cupy.ascontiguousarray(elems), mask.astype(cupy.int8), start, out,
                            scratch, cupy.int32(n), cupy.int32(m), cupy.int32(E), scale))
        return out

    def _neighbourhood(self, query, points, k, r, priorities, knn):
        qe, qq, qmask = query
        pe, pq, pmask = points
        if not (qq is None and pq is None and self._usable(qe, pe) and qe.dtype == pe.dtype
                and 1 <= k <= pe.shape[1]):
            return None
        import cupy

        bs, m, E = qe.shape
        n = pe.shape[1]
        idx = cupy.empty((bs, m, k), dtype=cupy.int64)
        nm = cupy.empty((bs, m, k), dtype=cupy.int8)
        rows = bs * m
        if rows == 0:
            return idx, nm.astype(bool), (None if knn else cupy.zeros((bs, m), qe.dtype))
        grid, block = ((rows + 127) // 128,), (128,)
        args = (cupy.ascontiguousarray(qe), qmask.astype(cupy.int8), cupy.ascontiguousarray(pe),
                pmask.astype(cupy.int8))
        ints = (cupy.int32(bs), cupy.int32(m), cupy.int32(n), cupy.int32(k), cupy.int32(E))
        if knn:
            scale = self._scalar(qe.dtype, QUANT["float32" if qe.dtype == cupy.float32
                                                  else "float64"])
            self._fn("knn", qe.dtype)(grid, block, (*args, idx, nm, *ints, scale))
            return idx, nm.astype(bool), None
        order = cupy.argsort(priorities.astype(cupy.int64), axis=-1, kind="stable")
        order = cupy.ascontiguousarray(order.astype(cupy.int64))
        r_arr = cupy.asarray(r).astype(qe.dtype).reshape(1)
        counts = cupy.empty((bs, m), dtype=qe.dtype)
        self._fn("ball", qe.dtype)(grid, block, (*args, order, r_arr, idx, nm, counts, *ints))
        return idx, nm.astype(bool), counts

    # --- contract overrides --------------------------------------------------------------------
    def _pc_ok(self, layers, emb, values) -> bool:
        d = emb.shape[-1]
        shapes = [tuple(t.shape) for wb in layers for t in wb]
        return (self._usable(emb, values) and emb.dtype == values.dtype and d <= 64
                and values.shape[-1] <= 512
                and shapes == [(d, HID), (HID,), (HID, HID), (HID,), (HID, OUT), (OUT,)])

    def _pc_args(self, layers, emb, values, nbr_idx, nbr_mask):
        import cupy

        params = [cupy.ascontiguousarray(t.astype(emb.dtype)) for wb in layers for t in wb]
        return (cupy.ascontiguousarray(emb), cupy.ascontiguousarray(values),
                cupy.ascontiguousarray(nbr_idx.astype(cupy.int64)), nbr_mask.astype(cupy.int8),
                *params)

    def pointconv(self, xp, layers, emb, values, nbr_idx, nbr_mask):
        if not self._pc_ok(layers, emb, values):
            return super().pointconv(xp, layers, emb, values, nbr_idx, nbr_mask)
        import cupy

        bs, m, K, D = emb.shape
        n, C = values.shape[1], values.shape[2]
        out = cupy.empty((bs, m, C * OUT), dtype=emb.dtype)
        if bs * m == 0:
            return out
        threads = min(1024, max(KT, -(-2 * C // 32) * 32))  # 8 outputs per thread
        self._fn("pc_fwd", emb.dtype)(
            (bs * m,), (threads,), (*self._pc_args(layers, emb, values, nbr_idx, nbr_mask), out,
                                    cupy.int32(m), cupy.int32(n), cupy.int32(K), cupy.int32(C),
                                    cupy.int32(D)))
        return out

    def pointconv_vjp(self, layers, emb, values, nbr_idx, nbr_mask, g):
        """Gradients of ``sum(pointconv(...) * g)`` by the fused backward kernel.

        cupy has no automatic differentiation, so training code calls this directly. The kernel
        accumulates with atomics: results agree with the reference to rounding, not bitwise from
        run to run.

        Parameters
        ----------
        layers : list
            The weight net's layers, ``[(W1 (d, 32), b1 (32,)), (W2 (32, 32), b2 (32,)),
            (W3 (32, 16), b3 (16,))]``.
        emb : cupy.ndarray
            Pair embeddings ``(bs, m, k, d)``, float32 or float64.
        values : cupy.ndarray
            Point features ``(bs, n, c)``.
        nbr_idx : cupy.ndarray
            Integer neighbour indices ``(bs, m, k)``.
        nbr_mask : cupy.ndarray
            Bool ``(bs, m, k)``, True at valid slots.
        g : cupy.ndarray
            The cotangent of pointconv's output, ``(bs, m, c·16)``.

        Returns
        -------
        grads : list
            ``[(dW1, db1), (dW2, db2), (dW3, db3)]``, shaped like ``layers``.
        demb : cupy.ndarray
            Gradient with respect to ``emb``, ``(bs, m, k, d)``.
        dvalues : cupy.ndarray
            Gradient with respect to ``values``, ``(bs, n, c)``.
        """
        import cupy

        bs, m, K, D = emb.shape
        n, C = values.shape[1], values.shape[2]
        demb = cupy.zeros_like(emb)
        dval = cupy.zeros_like(values)
        sizes = [D * HID, HID, HID * HID, HID, HID * OUT, OUT]
        dpar = cupy.zeros(sum(sizes), dtype=emb.dtype)
        total = bs * m * K
        if total:
            self._fn("pc_bwd", emb.dtype)(
                ((total + 127) // 128,), (128,),
                (*self._pc_args(layers, emb, values, nbr_idx, nbr_mask),
                 cupy.ascontiguousarray(g.astype(emb.dtype)), demb, dval, dpar, cupy.int32(bs),
                 cupy.int32(m), cupy.int32(n), cupy.int32(K), cupy.int32(C), cupy.int32(D)))
        cuts = [sum(sizes[:j]) for j in range(7)]
        parts = [dpar[cuts[j]:cuts[j + 1]] for j in range(6)]
        grads = [(parts[0].reshape(D, HID), parts[1]), (parts[2].reshape(HID, HID), parts[3]),
                 (parts[4].reshape(HID, OUT), parts[5])]
        return grads, demb, dval

    # --- sync / host ---------------------------------------------------------------------------
    def synchronize(self, x: Any = None) -> None:
        import cupy

        cupy.cuda.get_current_stream().synchronize()

    def to_numpy(self, x: Any):
        import cupy

        return cupy.asnumpy(x)


class CupyKernels(NativeKernels):
    """FPS and neighbour search through the CUDA kernels of ``kernels.cu`` (float arrays,
    ``LIECONV_CUPY_KERNELS`` not "never").

    Parameters
    ----------
    adapter : CupyAdapter
        The adapter that compiles and launches the kernels.
    """

    fused = True

    def __init__(self, adapter: CupyAdapter):
        self.adapter = adapter

    def fps(self, xp, elems, q, mask, m, u):
        return self.adapter._fps(elems, q, mask, m, u)

    def neighbourhood(self, xp, query, points, k, r, priorities, knn):
        return self.adapter._neighbourhood(query, points, k, r, priorities, knn)


ADAPTER = CupyAdapter()
