"""
SO(3) and SE(3) exp/log next to SciPy
=====================================

The rotation groups of :mod:`lieconv_core.groups` use closed-form exponential and logarithm maps
on algebra coordinates. For SO(3) the algebra coordinates of a rotation are its rotation vector,
so :meth:`SO3.exp <lieconv_core.groups.SO3.exp>` and :meth:`SO3.log <lieconv_core.groups.SO3.log>`
must agree with :class:`scipy.spatial.transform.Rotation`. SE(3) adds a translation; its exp is
checked against the matrix exponential of the 4×4 generator.
"""

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
from scipy.linalg import expm
from scipy.spatial.transform import Rotation

from lieconv_core import groups

n = 8 if os.environ.get("LIECONV_EXAMPLE_SMALL") == "1" else 2000
rng = np.random.default_rng(0)
so3, se3 = groups.SO3(), groups.SE3()

# %%
# SO(3): rotation vectors with angles up to just below π (where log is hardest).
axis = rng.standard_normal((n, 3))
axis /= np.linalg.norm(axis, axis=1, keepdims=True)
angle = rng.uniform(0, np.pi * 0.9999, size=(n, 1))
omega = axis * angle

R = so3.exp(np, omega)                        # (n, 3, 3)
R_scipy = Rotation.from_rotvec(omega).as_matrix()
print("exp: max |R - R_scipy| =", np.abs(R - R_scipy).max())

back = so3.log(np, R_scipy)                   # (n, 3)
rotvec = Rotation.from_matrix(R_scipy).as_rotvec()
print("log: max |log(R) - rotvec| =", np.abs(back - rotvec).max())

# %%
# SE(3): algebra coordinates (ω, u) — rotation first, then translation.
a = np.concatenate([omega, rng.standard_normal((n, 3))], axis=1)
M = se3.exp(np, a)                            # (n, 4, 4) homogeneous matrices


def hat(a):
    """4×4 generator of se(3) from (ω, u)."""
    w, u = a[:3], a[3:]
    X = np.zeros((4, 4))
    X[:3, :3] = [[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]]
    X[:3, 3] = u
    return X


M_ref = np.stack([expm(hat(ai)) for ai in a[:50]])
print("SE(3) exp vs expm: max error =", np.abs(M[:50] - M_ref).max())
print("SE(3) log(exp(a)) - a: max error =", np.abs(se3.log(np, M) - a).max())

# %%
# The error of log stays at rounding level across the whole range of angles, including the
# neighbourhood of π where an arccos-based formula loses digits.
err = np.abs(so3.log(np, R_scipy) - omega).max(axis=1)
fig, ax = plt.subplots(figsize=(6, 3))
ax.semilogy(angle[:, 0], np.maximum(err, 1e-17), ".", ms=3)
ax.set_xlabel("rotation angle θ")
ax.set_ylabel("|log(exp(ω)) − ω|")
ax.set_title("SO(3) log against SciPy's rotation vectors")
fig.tight_layout()
