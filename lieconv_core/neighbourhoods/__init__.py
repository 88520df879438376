"""Neighbourhoods of point clouds under a group distance: farthest point sampling and the neighbour
searches (:mod:`.search`, which picks the path), the chunked search over all pairs
(:mod:`.chunked`), the cell list for Euclidean and position-bounded distances (:mod:`.cell_list`),
the all-pairs neighbourhood (:mod:`.dense`) and the native-kernel capability (:mod:`.kernels`).

The functions take the adapter first and ask it only for primitives (gather, top-k, row searches,
query chunks) and for its native kernels of a group; they import no adapter module.
"""

from .chunked import chunked_neighbourhood
from .dense import dense_neighbourhood
from .kernels import NativeKernels
from .search import fps, neighbourhood

__all__ = ["fps", "neighbourhood", "chunked_neighbourhood", "dense_neighbourhood",
           "NativeKernels"]
