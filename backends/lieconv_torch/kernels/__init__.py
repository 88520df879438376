"""Triton kernels for the torch adapter (FPS, neighbour search, fused PointConv).

:func:`load` returns the launcher module :mod:`lieconv_torch.kernels.launch`. On CUDA tensors the
kernels are compiled. On CPU they can run under the Triton interpreter, which has to be switched on
(``TRITON_INTERPRET=1``) *before triton is first imported* - triton's own jit'd library functions
are fixed at import - so CPU tests run in a subprocess with that variable set (see
``tests/test_kernels_triton.py``).

Group coverage: the Euclidean-distance groups T(d) and Trivial(d) with d <= 3 (see
:func:`supports_group`) for FPS and neighbour search; the fused pointconv is group-independent
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


def supports_group(group) -> bool:
    """True for the groups whose distance the kernels compute: T(d), Trivial(d), d <= 3."""
    from lieconv_core.groups.translation import T
    from lieconv_core.groups.trivial import Trivial

    return type(group) in (T, Trivial) and 1 <= group.space_dim <= 3
