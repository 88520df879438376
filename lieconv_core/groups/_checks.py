"""Input checks of the public group methods (exp, log, lift): trailing shapes, and for log that
the matrices are in the group (where values can be read)."""

from __future__ import annotations

import math
from typing import Any


def check_trailing(x: Any, shape: tuple[int, ...], arg: str, where: str) -> None:
    """ValueError naming ``arg`` unless x has shape (..., *shape)."""
    got = tuple(x.shape)
    if len(got) < len(shape) or got[len(got) - len(shape):] != tuple(shape):
        want = ", ".join(str(s) for s in shape)
        raise ValueError(f"{where}: {arg} must have shape (..., {want}), got {got}")


def check_coords(group: Any, coords: Any) -> None:
    """ValueError unless coords is (batch, points, space_dim) (the lifts' input)."""
    if coords.ndim != 3 or coords.shape[-1] != group.space_dim:
        raise ValueError(f"{group!r}.lift: coords must have shape (batch, points, "
                         f"{group.space_dim}), got {tuple(coords.shape)}")


def tolerance(xp: Any, M: Any) -> float:
    """Allowed deviation from the group's form: sqrt(eps) of M's dtype (~1.5e-8 in float64,
    ~3.5e-4 in float32), loose enough for products of several rounded matrices."""
    return math.sqrt(float(xp.finfo(M.dtype).eps))


def determinant(M: Any) -> Any:
    """det of (..., d, d) for d = 2 or 3, elementwise."""
    if M.shape[-1] == 2:
        return M[..., 0, 0] * M[..., 1, 1] - M[..., 0, 1] * M[..., 1, 0]
    m = [[M[..., i, j] for j in range(3)] for i in range(3)]
    return (m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]))


def not_rotation(xp: Any, R: Any, tol: float) -> Any:
    """(..., d, d) -> (...) bool: True where R is not a rotation (|RᵀR − I| > tol or det <= 0;
    NaN counts as not a rotation). d = 2 or 3, elementwise (no batched small products)."""
    d = R.shape[-1]
    col = [[R[..., i, j] for i in range(d)] for j in range(d)]
    bad = ~(determinant(R) > 0)
    for a in range(d):
        for b in range(a, d):
            dot = sum(x * y for x, y in zip(col[a], col[b]))
            bad = bad | ~(xp.abs(dot - (1.0 if a == b else 0.0)) <= tol)
    return bad


def not_scaled_rotation(xp: Any, M: Any, tol: float) -> Any:
    """(..., 2, 2) -> (...) bool: True where M is not s·R, s > 0, R a rotation."""
    det = determinant(M)
    s = xp.sqrt(xp.abs(det))
    bad = ~(xp.abs(M[..., 0, 0] - M[..., 1, 1]) <= tol * s)
    return bad | ~(xp.abs(M[..., 0, 1] + M[..., 1, 0]) <= tol * s) | ~(det > 0)


def not_affine(xp: Any, M: Any, tol: float) -> Any:
    """(..., d+1, d+1) -> (...) bool: True where the last row is not (0, ..., 0, 1)."""
    d = M.shape[-1] - 1
    bad = ~(xp.abs(M[..., d, d] - 1) <= tol)
    for j in range(d):
        bad = bad | ~(xp.abs(M[..., d, j]) <= tol)
    return bad


def not_translation(xp: Any, M: Any, tol: float) -> Any:
    """(..., d+1, d+1) -> (...) bool: True where M is not [[I, t], [0, 1]]."""
    d = M.shape[-1] - 1
    bad = not_affine(xp, M, tol)
    for i in range(d):
        for j in range(d):
            bad = bad | ~(xp.abs(M[..., i, j] - (1.0 if i == j else 0.0)) <= tol)
    return bad


def require_member(xp: Any, bad: Any, group: Any, arg: str) -> None:
    """ValueError when ``bad`` (a bool array: which matrices are not in the group) has a True
    entry. Skipped while a compiler traces (torch.compile; jax tracers cannot be read), as
    :func:`lieconv_core.cloud.validate_inputs` skips its data checks."""
    from .._backend import adapter_for
    from ..cloud import _concrete_any

    if adapter_for(xp).tracing():
        return
    if _concrete_any(xp.any(bad)):
        raise ValueError(f"{group!r}.log: {arg} holds matrices that are not in {group!r} "
                         f"(log is not a projection onto the group)")
