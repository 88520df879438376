"""The native-kernel capability: what an adapter offers to run FPS and the neighbour search of one
group natively (compiled GPU kernels, a framework's own loops, in-place host loops).

An adapter's ``native_kernels(group)`` returns a :class:`NativeKernels` (or None). The searches of
:mod:`.search` ask it first; each method answers with the searches' exact result, or None where it
does not apply to the arrays (shapes, dtypes, devices), and the array-API code runs instead. A
backend plugs its kernels in here and never re-implements the choice between the search paths.
"""

from __future__ import annotations

from typing import Any


class NativeKernels:
    """Native FPS and neighbour search for one group; this base class answers nothing.

    Subclasses override :meth:`fps` and :meth:`neighbourhood` and must return the same numbers
    as the array-API code (identical indices; floats equal to rounding).
    """

    #: whether compiled kernels (Triton, Pallas, CUDA) cover this group's sampling and search,
    #: as :func:`lieconv_core.groups.supports_group` declares; host fast paths leave it False
    fused: bool = False

    def fps(self, xp: Any, elems: Any, q: Any, mask: Any, m: int, u: Any) -> Any | None:
        """Farthest point sampling, or None where the kernel does not apply.

        Parameters
        ----------
        xp : module
            The array namespace.
        elems : array
            Group elements ``(bs, n, E)``.
        q : array or None
            Orbit identifiers ``(bs, n, dq)``, or None.
        mask : array
            Bool ``(bs, n)``, True at valid points.
        m : int
            Number of points to sample per cloud.
        u : array
            Uniform draws ``(bs,)`` that pick the start among the valid points.

        Returns
        -------
        array or None
            Indices ``(bs, m)`` as :func:`lieconv_core.neighbourhoods.fps` returns them; None
            here.
        """
        return None

    def neighbourhood(self, xp: Any, query: tuple, points: tuple, k: int, r: Any,
                      priorities: Any, knn: bool) -> tuple[Any, Any, Any] | None:
        """The neighbour search, or None where the kernel does not apply.

        Parameters
        ----------
        xp : module
            The array namespace.
        query : tuple
            ``(elems (bs, m, E), q or None, mask (bs, m))`` of the queries.
        points : tuple
            The same for the ``n`` candidate points.
        k : int
            Neighbours per query.
        r : float or array
            Ball radius; unused in kNN mode.
        priorities : array or None
            Integers ``(bs, n)``, a permutation per cloud (ball mode); None in kNN mode.
        knn : bool
            True: k nearest neighbours; False: ball mode.

        Returns
        -------
        tuple or None
            ``(idx, nbr_mask, inball)`` as :func:`lieconv_core.neighbourhoods.neighbourhood`
            returns them; None here.
        """
        return None
