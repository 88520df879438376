"""lieconv_cupy: the cupy adapter and CUDA kernels for lieconv_core."""

from .adapter import ADAPTER, CupyAdapter

__all__ = ["ADAPTER", "CupyAdapter"]
