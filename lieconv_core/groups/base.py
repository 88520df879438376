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
        """Lift points to group elements: each point to ``nsamples`` elements that map onto it.

        Parameters
        ----------
        xp : Namespace
            The array namespace of the inputs.
        coords : Array, shape (bs, n, space_dim)
            The points.
        nsamples : int
            Elements per point (``ns``); draws over the stabiliser where :attr:`random_lift`.
        draws : PortableDraws or lieconv_jax.JaxDraws
            The source of random numbers for the stabiliser samples.

        Returns
        -------
        elems : Array, shape (bs, n * ns, elem_dim)
            The lifted elements, point-major: entry ``i * ns + s`` is sample ``s`` of point ``i``.
        q : Array, shape (bs, n * ns, q_dim), or None
            The orbit identifiers, None for a transitive action (``q_dim == 0``).
        """
        raise NotImplementedError

    def pair_log(self, xp: Any, u: Any, v: Any) -> Any:
        """The algebra coordinates of v⁻¹u, log(v⁻¹u), for broadcastable element arrays.

        Parameters
        ----------
        xp : Namespace
            The array namespace of the inputs.
        u, v : Array, shape (..., elem_dim)
            Lifted elements (broadcast against each other).

        Returns
        -------
        Array, shape (..., lie_dim)
            log(v⁻¹u).
        """
        raise NotImplementedError

    def distance_features(self, xp: Any, elems: Any) -> Any:
        """What :meth:`feature_distance` needs of one element.

        The searches (farthest point sampling, neighbour search) compute these once per element
        and gather them instead of whole elements.

        Parameters
        ----------
        xp : Namespace
            The array namespace of the inputs.
        elems : Array, shape (..., elem_dim)
            Lifted elements.

        Returns
        -------
        Array, shape (..., F)
            The per-element features; by default the elements themselves (F = elem_dim).
        """
        return elems

    def feature_distance(self, xp: Any, fu: Any, qu: Any, fv: Any, qv: Any) -> Any:
        """:meth:`pair_distance` computed from :meth:`distance_features`, with the same arithmetic.

        ``pair_distance(u, qu, v, qv) == feature_distance(distance_features(u), qu,
        distance_features(v), qv)`` bit for bit.

        Parameters
        ----------
        xp : Namespace
            The array namespace of the inputs.
        fu, fv : Array, shape (..., F)
            Features of the two elements (broadcasting).
        qu, qv : Array, shape (..., q_dim), or None
            Their orbit identifiers.

        Returns
        -------
        Array, shape (...)
            The distance under :meth:`pair_distance`.
        """
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
        """The radius under :meth:`pair_distance` of the ball of group-distance radius ``r``.

        Parameters
        ----------
        r : float or Array, shape ()
            A radius in the group distance.

        Returns
        -------
        float or Array, shape ()
            ``r / distance_scale`` (``r`` itself where the scale is 1).
        """
        s = self.distance_scale
        return r if s == 1 else r / s

    def position_bound(self) -> float | None:
        """A lower bound of the distance by the distance of the positions, if there is one.

        The cell-list neighbour search (:mod:`lieconv_core.neighbourhoods.cell_list`) bins
        elements by :meth:`position` and, for a ball of radius r, looks only at points within
        r / c of the query.

        Returns
        -------
        float or None
            A constant c > 0 with ``pair_distance(u, qu, v, qv) >= c·‖position(u) −
            position(v)‖`` for every pair, or None when the distance has no such bound (the
            default).
        """
        return None

    def position(self, xp: Any, elems: Any) -> Any:
        """The point of R^space_dim an element stands for (its translation part).

        Needed only where :meth:`position_bound` is not None.

        Parameters
        ----------
        xp : Namespace
            The array namespace of the inputs.
        elems : Array, shape (..., elem_dim)
            Lifted elements.

        Returns
        -------
        Array, shape (..., space_dim)
            Their positions.
        """
        raise NotImplementedError

    def distance_from_log(self, xp: Any, a: Any, qu: Any, qv: Any) -> Any:
        """The left-invariant distance of a pair from its log and orbit identifiers.

        Parameters
        ----------
        xp : Namespace
            The array namespace of the inputs.
        a : Array, shape (..., lie_dim)
            log(v⁻¹u), as :meth:`pair_log` returns it.
        qu, qv : Array, shape (..., q_dim), or None
            The orbit identifiers of u and v (None where ``q_dim == 0``).

        Returns
        -------
        Array, shape (...)
            The distance, ≥ 0.
        """
        raise NotImplementedError

    def random_element(self, xp: Any, shape: tuple[int, ...], draws: Any, dtype: Any,
                       device: Any) -> Any:
        """Random group elements in algebra coordinates (for tests and augmentation).

        Parameters
        ----------
        xp : Namespace
            The array namespace of the inputs.
        shape : tuple of int
            The batch shape.
        draws : PortableDraws or lieconv_jax.JaxDraws
            The source of random numbers.
        dtype : dtype of ``xp``
            Floating dtype of the result.
        device : device
            Where the result lives.

        Returns
        -------
        Array, shape ``shape + (lie_dim,)``
            The elements' algebra coordinates (apply them with :meth:`act_on_points`).
        """
        raise NotImplementedError

    def act_on_points(self, xp: Any, g: Any, coords: Any) -> Any:
        """Move points by group elements, one element per batch entry.

        Parameters
        ----------
        xp : Namespace
            The array namespace of the inputs.
        g : Array, shape (bs, lie_dim)
            Elements in algebra coordinates (as :meth:`random_element` gives them).
        coords : Array, shape (bs, n, space_dim)
            The points.

        Returns
        -------
        Array, shape (bs, n, space_dim)
            exp(g) applied to every point of its batch entry.
        """
        raise NotImplementedError

    def act_on_elements(self, xp: Any, g: Any, elems: Any) -> Any:
        """Left-multiply lifted elements by group elements, one per batch entry.

        Parameters
        ----------
        xp : Namespace
            The array namespace of the inputs.
        g : Array, shape (bs, lie_dim)
            Elements in algebra coordinates.
        elems : Array, shape (bs, n, elem_dim)
            Lifted elements.

        Returns
        -------
        Array, shape (bs, n, elem_dim)
            exp(g) · elems.
        """
        raise NotImplementedError

    # --- derived -------------------------------------------------------------------------------
    def pair_embed(self, xp: Any, u: Any, qu: Any, v: Any, qv: Any) -> Any:
        """The pair embedding [log(v⁻¹u), q_u, q_v] that the layer's weight net reads.

        Parameters
        ----------
        xp : Namespace
            The array namespace of the inputs.
        u, v : Array, shape (..., elem_dim)
            Lifted elements (broadcasting).
        qu, qv : Array, shape (..., q_dim), or None
            Their orbit identifiers.

        Returns
        -------
        Array, shape (..., embed_dim)
            The embedding; just log(v⁻¹u) where ``q_dim == 0``.
        """
        return self.embed_from_log(xp, self.pair_log(xp, u, v), qu, qv)

    def embed_from_log(self, xp: Any, a: Any, qu: Any, qv: Any) -> Any:
        """The pair embedding [a, q_u, q_v] from a = log(v⁻¹u).

        Parameters
        ----------
        xp : Namespace
            The array namespace of the inputs.
        a : Array, shape (..., lie_dim)
            log(v⁻¹u).
        qu, qv : Array, shape (..., q_dim), or None
            The orbit identifiers (broadcast to ``a``'s batch shape).

        Returns
        -------
        Array, shape (..., embed_dim)
            The embedding.
        """
        if self.q_dim == 0:
            return a
        shape = a.shape[:-1]
        parts = [a, xp.broadcast_to(qu, (*shape, self.q_dim)),
                 xp.broadcast_to(qv, (*shape, self.q_dim))]
        return xp.concat(parts, axis=-1)

    def pair_distance(self, xp: Any, u: Any, qu: Any, v: Any, qv: Any) -> Any:
        """The left-invariant distance between lifted elements.

        Parameters
        ----------
        xp : Namespace
            The array namespace of the inputs.
        u, v : Array, shape (..., elem_dim)
            Lifted elements (broadcasting).
        qu, qv : Array, shape (..., q_dim), or None
            Their orbit identifiers.

        Returns
        -------
        Array, shape (...)
            ``distance_from_log(pair_log(u, v), qu, qv)``.
        """
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
