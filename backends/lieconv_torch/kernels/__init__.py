"""Triton kernels for the torch adapter (FPS, neighbour search, fused PointConv).

:func:`load` returns the launcher module :mod:`lieconv_torch.kernels.launch`. On CUDA tensors the
kernels are compiled. On CPU they can run under the Triton interpreter, which has to be switched on
(``TRITON_INTERPRET=1``) *before triton is first imported* - triton's own jit'd library functions
are fixed at import - so CPU tests run in a subprocess with that variable set (see
``tests/test_kernels_triton.py``).

Group coverage: the groups that declare a Euclidean distance on 1 to 3 element coordinates
(T(d), Trivial(d), coordinate subgroups of T(d); :func:`lieconv_core.groups.supports_group`)
for FPS and neighbour search; the fused pointconv is group-independent
(any pair-embedding width d <= 64). The torch adapter falls back to the reference path otherwise.
"""

from __future__ import annotations

from types import ModuleType


def interpreting() -> bool:
    """Whether triton runs kernels under its interpreter in this process."""
    import triton

    return bool(triton.knobs.runtime.interpret)


def load(interpret: bool = False) -> ModuleType:
    """The launcher module. ``interpret=True`` checks that the interpreter is on."""
    if interpret and not interpreting():
        raise RuntimeError("the Triton interpreter must be enabled before triton is imported: "
                           "run with TRITON_INTERPRET=1 in the environment")
    from . import launch

    return launch
