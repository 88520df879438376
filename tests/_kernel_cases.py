"""Small random inputs shared by the kernel tests (test_kernels_{triton,pallas,cuda}.py).

Each case is a dict of numpy arrays plus sizes: a padded cloud of points (grid coordinates, so that
distances tie), the FPS draw u, query/point masks, priorities (a random permutation per cloud), a
radius small enough that some balls hold fewer than k points, and pointconv inputs.
"""

from __future__ import annotations

import numpy as np

from lieconv_core.groups.translation import T
from lieconv_core.groups.trivial import Trivial

#: name -> (group, bs, n, m, k, radius, grid?)
CASES = {
    "T2-grid": (T(2), 2, 19, 6, 5, 1.5, True),
    "T3-random": (T(3), 2, 17, 5, 4, 0.9, False),
    "T1-grid-bigk": (T(1), 1, 9, 4, 9, 2.5, True),
    "Trivial2-grid": (Trivial(2), 2, 12, 4, 3, 2.0, True),
    "single-point": (T(2), 2, 1, 1, 1, 1.0, False),
}


def make_case(name: str, dtype: str, seed: int = 0, chin: int = 3) -> dict:
    group, bs, n, m, k, r, grid = CASES[name]
    rng = np.random.default_rng(seed + sum(map(ord, name)))
    d = group.space_dim
    if grid:
        x = rng.integers(0, 3, size=(bs, n, d)).astype(dtype)
    else:
        x = rng.normal(size=(bs, n, d)).astype(dtype)
    mask = rng.random((bs, n)) > 0.25
    mask[:, 0] = True
    if bs > 1 and n > 3:
        mask[1, n // 2:] = False  # a cloud with trailing padding
    u = rng.random(bs).astype(dtype)
    prio = np.stack([rng.permutation(n) for _ in range(bs)]).astype(np.int64)
    qidx = np.stack([rng.choice(n, m, replace=False) for _ in range(bs)])
    qe = np.take_along_axis(x, qidx[..., None], axis=1)
    qmask = np.take_along_axis(mask, qidx, axis=1)
    if bs > 1:
        qmask[1, -1] = False
    emb_dim = group.embed_dim
    emb = rng.normal(size=(bs, m, k, emb_dim)).astype(dtype)
    values = rng.normal(size=(bs, n, chin)).astype(dtype)
    widths = [emb_dim, 32, 32, 16]
    layers = [((rng.normal(size=(widths[i], widths[i + 1])) / np.sqrt(widths[i])).astype(dtype),
               (0.1 * rng.normal(size=widths[i + 1])).astype(dtype)) for i in range(3)]
    grad_out = rng.normal(size=(bs, m, chin * 16)).astype(dtype)
    return dict(group=group, bs=bs, n=n, m=m, k=k, r=np.asarray(r, dtype=dtype), x=x, mask=mask,
                u=u, prio=prio, qe=qe, qmask=qmask, emb=emb, values=values, layers=layers,
                grad_out=grad_out, dtype=dtype)


TOL = {"float64": 1e-10, "float32": 1e-5}


def assert_close(a, b, dtype: str, what: str = "") -> None:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(1.0, float(np.max(np.abs(b))) if b.size else 1.0)
    err = float(np.max(np.abs(a - b))) if a.size else 0.0
    assert err <= 10 * TOL[dtype] * scale, f"{what}: max abs err {err:.3g} (scale {scale:.3g})"
