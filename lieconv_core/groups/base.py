"""The group interface the LieConv layer relies on.

A group stores each lifted point as an *element* (bs, n, E) — algebra coordinates for the abelian
groups, a flattened matrix for SE(2), SO(3), SE(3) — plus an optional orbit identifier q
(bs, n, q_dim). The layer only calls :meth:`Group.pair_embed` and :meth:`Group.pair_distance` on
broadcastable (…, E) element arrays; both depend on u, v only through log(v⁻¹u) and q, which is
what makes the layer equivariant.
"""

from __future__ import annotations

import math
from typing import Any

from ._special import wrap_angle


class Group:
    """Base class. Subclasses set the class attributes and implement the hooks.

    A group used by the layers needs :meth:`lift`, :meth:`pair_log` and
    :meth:`distance_from_log`; the tests and augmentation also use :meth:`random_element`,
    :meth:`act_on_points` and :meth:`act_on_elements`. Every hook takes the array namespace
    ``xp`` first and may use only array-API operations on it, so that every backend runs it.
    The example gallery builds a complete custom group ("A custom group from exp, log and a
    lift").
    """

    #: size of the flattened element representation
    elem_dim: int = 0
    #: size of the algebra coordinates returned by :meth:`pair_log`
    lie_dim: int = 0
    #: size of the orbit identifier q (0: transitive action)
    q_dim: int = 0
    #: dimension of the space the group acts on
    space_dim: int = 2
    #: default weight of the rotational part in the distance
    alpha: float = 0.2
    #: True if the stabilizer is non-trivial and lifts draw random samples
    random_lift: bool = False
    #: True if points at the origin are outside the domain (RxSO(2))
    excludes_origin: bool = False

    # --- capabilities: what the fast paths may assume (see :func:`supports_group`) ----------------
    #: True if :meth:`pair_distance` is ‖u − v‖ on the element arrays and ignores q: the cell-list
    #: search bins the elements themselves, FPS and the searches use per-coordinate differences,
    #: and the fused kernels apply (:func:`supports_group`). A subclass that overrides a distance
    #: hook without declaring this again is not Euclidean.
    euclidean_distance: bool = False
    #: True if :meth:`pair_embed` is the base formula from :meth:`pair_log` (pair logs computed once
    #: per forward can be shared between layers); False for a group with its own pair embedding
    embeds_from_log: bool = True
    #: True if :meth:`pair_distance` is the base formula from :meth:`pair_log`
    distance_from_log_only: bool = True

    #: the hooks each capability depends on: overriding one resets the capability unless the
    #: subclass declares it again
    _CAPABILITY_HOOKS = {
        "euclidean_distance": ("pair_distance", "distance_features", "feature_distance",
                               "pair_log", "distance_from_log"),
        "embeds_from_log": ("pair_embed",),
        "distance_from_log_only": ("pair_distance",),
    }

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = vars(cls)
        for flag, hooks in Group._CAPABILITY_HOOKS.items():
            if flag not in own and any(h in own for h in hooks):
                setattr(cls, flag, False)

    @property
    def embed_dim(self) -> int:
        """Width of the pair embedding [log(v⁻¹u), q_u, q_v] fed to the weight net."""
        return self.lie_dim + 2 * self.q_dim

    # --- hooks ---------------------------------------------------------------------------------
    def lift(self, xp: Any, coords: Any, nsamples: int, draws: Any) -> tuple[Any, Any]:
        """coords (bs, n, space_dim) -> elements (bs, n*ns, E), q (bs, n*ns, q_dim) or None.

        Lifted entries repeat point-major: entry i*ns + s is sample s of point i.
        """
        raise NotImplementedError

    def pair_log(self, xp: Any, u: Any, v: Any) -> Any:
        """log(v⁻¹u) in algebra coordinates: (..., E), (..., E) -> (..., lie_dim)."""
        raise NotImplementedError

    def distance_features(self, xp: Any, elems: Any) -> Any:
        """What :meth:`feature_distance` needs of one element: (..., E) -> (..., F). The searches
        (FPS, neighbour search) compute these once per element and gather them instead of whole
        elements. Default: the elements themselves."""
        return elems

    def feature_distance(self, xp: Any, fu: Any, qu: Any, fv: Any, qv: Any) -> Any:
        """:meth:`pair_distance` from :meth:`distance_features` (broadcasting), with the same
        arithmetic: ``pair_distance(u, qu, v, qv) == feature_distance(distance_features(u), qu,
        distance_features(v), qv)`` bit for bit. Default: pair_distance on the elements."""
        return self.pair_distance(xp, fu, qu, fv, qv)

    @property
    def distance_scale(self) -> float:
        """s > 0 with the group distance equal to s · :meth:`pair_distance` — 1 except for T(d)
        (α) and Trivial(d) (1 − α), whose searches compute the Euclidean ‖Δx‖ (what the
        fused kernels and the cell list evaluate) while the distance is the original's
        α‖Δx‖ or (1 − α)‖Δx‖. A ball of radius r is the ball of radius r / s under
        :meth:`pair_distance` (:meth:`search_radius`); FPS is the same under either."""
        return 1.0

    def search_radius(self, r: Any) -> Any:
        """The radius under :meth:`pair_distance` of the ball of group-distance radius r (a
        scalar or 0-d array): r / :attr:`distance_scale` (r itself where the scale is 1)."""
        s = self.distance_scale
        return r if s == 1 else r / s

    def position_bound(self) -> float | None:
        """A constant c > 0 with ``pair_distance(u, qu, v, qv) >= c·‖position(u) − position(v)‖``
        for every pair, or None when the distance has no such bound (the default). The cell-list
        neighbour search (:mod:`lieconv_core.neighbourhoods.cell_list`) bins elements by
        :meth:`position` and, for a ball of radius r, looks only at points within r / c of the
        query."""
        return None

    def position(self, xp: Any, elems: Any) -> Any:
        """The point of R^space_dim an element stands for (its translation part):
        (..., E) -> (..., space_dim). Needed only where :meth:`position_bound` is not None."""
        raise NotImplementedError

    def distance_from_log(self, xp: Any, a: Any, qu: Any, qv: Any) -> Any:
        """Left-invariant distance from a = log(v⁻¹u) and orbit ids: (..., lie_dim) -> (...)."""
        raise NotImplementedError

    def random_element(self, xp: Any, shape: tuple[int, ...], draws: Any, dtype: Any,
                       device: Any) -> Any:
        """Random elements as algebra coordinates ``(*shape, lie_dim)`` (tests, augmentation)."""
        raise NotImplementedError

    def act_on_points(self, xp: Any, g: Any, coords: Any) -> Any:
        """Apply elements g (bs, lie_dim) (algebra coordinates) to points (bs, n, space_dim)."""
        raise NotImplementedError

    def act_on_elements(self, xp: Any, g: Any, elems: Any) -> Any:
        """Left-multiply lifted elements (bs, n, E) by g (bs, lie_dim)."""
        raise NotImplementedError

    # --- derived -------------------------------------------------------------------------------
    def pair_embed(self, xp: Any, u: Any, qu: Any, v: Any, qv: Any) -> Any:
        """Pair embedding [log(v⁻¹u), q_u, q_v] (broadcasting): -> (..., embed_dim)."""
        return self.embed_from_log(xp, self.pair_log(xp, u, v), qu, qv)

    def embed_from_log(self, xp: Any, a: Any, qu: Any, qv: Any) -> Any:
        """[a, q_u, q_v] for a = log(v⁻¹u) (broadcasting): -> (..., embed_dim)."""
        if self.q_dim == 0:
            return a
        shape = a.shape[:-1]
        parts = [a, xp.broadcast_to(qu, (*shape, self.q_dim)),
                 xp.broadcast_to(qv, (*shape, self.q_dim))]
        return xp.concat(parts, axis=-1)

    def pair_distance(self, xp: Any, u: Any, qu: Any, v: Any, qv: Any) -> Any:
        """Left-invariant distance between lifted elements (broadcasting): -> (...)."""
        return self.distance_from_log(xp, self.pair_log(xp, u, v), qu, qv)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and repr(self) == repr(other)

    def __hash__(self) -> int:
        return hash(repr(self))


def supports_group(group: Group, max_dim: int = 3) -> bool:
    """Whether the fused kernels and other Euclidean fast paths support ``group``: its distance
    is Euclidean on the elements (:attr:`Group.euclidean_distance`) and the elements have 1 to
    ``max_dim`` coordinates.

    Parameters
    ----------
    group : Group
        The group.
    max_dim : int
        Most element coordinates the caller handles.

    Returns
    -------
    bool
    """
    return bool(group.euclidean_distance) and 1 <= group.elem_dim <= max_dim


def repeat_samples(xp: Any, x: Any, ns: int) -> Any:
    """(bs, n, ...) -> (bs, n*ns, ...), point-major (entry i*ns + s is a copy of point i)."""
    if ns == 1:
        return x
    bs, n = x.shape[:2]
    rest = tuple(x.shape[2:])
    y = xp.broadcast_to(x[:, :, None, ...], (bs, n, ns, *rest))
    return xp.reshape(y, (bs, n * ns, *rest))


def norm(xp: Any, x: Any) -> Any:
    """Euclidean norm over the last axis. For up to 4 components the squares are added one by one,
    left to right: the same rounding on every backend (no reduction order to differ) and, in
    numpy, no reduction over a length-3 inner axis (several times slower than elementwise)."""
    if x.shape[-1] <= 4:
        return sqrt_sum_squares(xp, (x[..., i] for i in range(x.shape[-1])))
    return xp.sqrt(xp.sum(x * x, axis=-1))


def sqrt_sum_squares(xp: Any, comps: Any) -> Any:
    """sqrt(((c0² + c1²) + c2²) + ...) of the component arrays ``comps``, added left to right: the
    rounding of :func:`norm` for small last axes, shared by the Euclidean fast paths (FPS, the
    chunked neighbour search) so that they give bit-identical distances."""
    s = None
    for c in comps:
        s = c * c if s is None else s + c * c
    return xp.sqrt(s)


def uniform_angle(xp: Any, shape: tuple[int, ...], draws: Any, dtype: Any, device: Any) -> Any:
    """Uniform angles in [-π, π)."""
    return wrap_angle(xp, 2 * math.pi * draws.uniform(xp, shape, dtype, device))
