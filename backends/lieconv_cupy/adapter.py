"""The cupy adapter: the reference implementation on cupy arrays, plus CUDA kernels."""

from __future__ import annotations

from typing import Any

from lieconv_core.adapter import ReferenceAdapter


class CupyAdapter(ReferenceAdapter):
    name = "cupy"

    def synchronize(self, x: Any = None) -> None:
        import cupy

        cupy.cuda.get_current_stream().synchronize()

    def to_numpy(self, x: Any):
        import cupy

        return cupy.asnumpy(x)


ADAPTER = CupyAdapter()
