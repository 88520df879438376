"""BottleBlock, GlobalPool and LieResNet (as in the paper), functional."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from array_api_compat import device as _device

from ..cloud import Cloud, default_mask, lift_unchecked, validate_inputs
from ..groups import SE3, as_group
from ..groups.base import Group
from ..random import as_draws
from .layers import bn_init, bn_swish, linear, linear_init, masked_pool, swish, zero_invalid
from .lieconv import LieConv
from .module import Ctx, Model


def _act(xp, params, state, key, x, mask, ctx, new_state, bn):
    """swish(masked BN ``key``(x)) when ``bn`` (the BN state goes to new_state), else swish(x)."""
    if not bn:
        return swish(xp, x)
    y, new_state[key] = bn_swish(xp, params[key], state[key], x, mask, ctx.train)
    return y


class BottleBlock:
    """Pre-activation bottleneck residual block around a LieConv.

    [BN] Swish Linear(c → c/4) [BN] Swish LieConv(c/4 → c_out/4) [BN] Swish Linear(c_out/4 → c_out),
    plus the (subsampled) input added to the first c channels (zero-padded identity).

    Parameters
    ----------
    chin : int
        Input channels ``c``.
    chout : int
        Output channels, at least ``chin``.
    conv : LieConv
        The convolution, mapping ``chin // 4`` to ``chout // 4`` channels.
    bn : bool, default True
        Masked batch norm before each activation.
    """

    def __init__(self, chin: int, chout: int, conv: LieConv, bn: bool = True):
        if chout < chin:
            raise ValueError(
                f"BottleBlock needs chout >= chin for the residual, got {chin} -> {chout}")
        if conv.chin != chin // 4 or conv.chout != chout // 4:
            raise ValueError("BottleBlock's conv must map chin//4 -> chout//4 channels")
        self.chin, self.chout, self.conv, self.bn = chin, chout, conv, bool(bn)

    def init_host(self, gen: np.random.Generator) -> tuple[dict, dict]:
        """Draw the block's parameters and state on the host in float64.

        Parameters
        ----------
        gen : numpy.random.Generator
            The random generator.

        Returns
        -------
        params : dict
            The linear layers, the convolution's parameters and the batch-norm affine parameters.
        state : dict
            The convolution's state and the batch-norm running statistics.
        """
        c4, o4 = self.chin // 4, self.chout // 4
        conv_p, conv_s = self.conv.init_host(gen)
        params = {"lin0": linear_init(gen, self.chin, c4), "conv": conv_p,
                  "lin1": linear_init(gen, o4, self.chout)}
        state: dict[str, Any] = {"conv": conv_s}
        if self.bn:
            for key, c in (("bn0", self.chin), ("bn1", c4), ("bn2", o4)):
                params[key], state[key] = bn_init(c)
        return params, state

    def apply(self, params: dict, state: dict, cloud: Cloud, ctx: Ctx,
              pairs: tuple | None = None) -> tuple[Cloud, dict]:
        """The block on a lifted cloud.

        Parameters
        ----------
        params, state : dict
            The block's parameters and state (:meth:`init_host`, converted to the backend).
        cloud : Cloud
            Lifted elements (bs, m, E), values (bs, m, chin), mask (bs, m).
        ctx : Ctx
            Namespace, adapter, mode and random draws.
        pairs : tuple, optional
            The conv's :meth:`LieConv.pairs` of ``cloud``, shared across blocks while nothing
            subsamples.

        Returns
        -------
        cloud : Cloud
            The (possibly subsampled) cloud with values (bs, m', chout).
        state : dict
            The new state.
        """
        xp = ctx.xp
        new_state: dict[str, Any] = {}
        idx, conv_state = self.conv.query_indices(state["conv"], cloud, ctx)
        bn, mask = self.bn, cloud.mask
        v = linear(params["lin0"], _act(xp, params, state, "bn0", cloud.values, mask, ctx,
                                        new_state, bn))
        v = _act(xp, params, state, "bn1", v, mask, ctx, new_state, bn)
        out, new_state["conv"] = self.conv.apply(params["conv"], conv_state,
                                                 cloud._replace(values=v), ctx, idx=idx,
                                                 pairs=pairs)
        v = _act(xp, params, state, "bn2", out.values, out.mask, ctx, new_state, bn)
        v = linear(params["lin1"], v)
        shortcut = self.conv.subsample(cloud, idx, ctx).values
        if self.chout > self.chin:
            v = xp.concat([v[..., : self.chin] + shortcut, v[..., self.chin:]], axis=-1)
        else:
            v = v + shortcut
        v = zero_invalid(xp, v, out.mask)
        return out._replace(values=v), new_state


def _check_widths(k: list[int]) -> list[int]:
    """The channel widths k (num_layers + 1), or ValueError naming k where the bottleneck blocks
    cannot take them: each runs its LieConv on k_i // 4 channels (floor: the RotMNIST widths 155,
    188, ... are not multiples of 4) and adds its input to its output (k_i <= k_i+1)."""
    if min(k) < (4 if len(k) > 1 else 1):
        raise ValueError(f"k must be at least 4 (the bottleneck blocks run LieConv on k // 4 "
                         f"channels), got k={k}")
    if any(b < a for a, b in zip(k, k[1:])):
        raise ValueError(f"k must not decrease from layer to layer (each block adds its input "
                         f"to its output), got k={k}")
    return k


def _per_layer(value: Any, n: int, name: str) -> list:
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != n:
            raise ValueError(f"{name} must have {n} entries, got {len(value)}")
        return list(value)
    return [value] * n


class LieResNet(Model):
    """The LieConv residual network: a functional model with ``init`` and ``apply``.

    Lift → Linear(chin → k0) → L × BottleBlock → [masked BN] → Swish → Linear(k_L → outputs) →
    global masked mean (or sum) pool over points and lift samples.

    Parameters
    ----------
    chin : int
        Input feature channels.
    num_outputs : int
        Output channels.
    k : int or sequence of int
        Channel width, or a list of ``num_layers + 1`` widths (at least 4, non-decreasing).
    nbhd : int, float or None
        Neighbourhood size; None or inf means every point.
    ds_frac, fill : float or sequence of float
        Fraction of points kept by each layer (farthest point sampling) and target fraction of
        points inside a ball (radius controller); scalars or per-layer lists.
    bn : bool
        Masked batch norm in the blocks and weight nets.
    num_layers : int
        Number of :class:`BottleBlock` s.
    mean : bool
        Mean (else sum) aggregation in the layers and in the pooling.
    pool : bool
        Pool over points; else ``apply`` returns per-point outputs ``(bs, n·ns, num_outputs)``.
    liftsamples : int
        Stabilizer samples per point (``ns``) for groups with a random lift.
    group : Group or str
        The symmetry group or its name (default ``SE3(0.2)``).
    knn : bool
        k nearest neighbours instead of a random subset of the ball.
    cache : bool
        Reuse the farthest-point-sampling indices of the first call (fixed grids, images).
    original_pairs : bool
        The original's pair orientation (default): its subsampling transposes the
        ``(bs, n, n)`` pair tensor, so the layers after an odd number of subsampling layers
        (``ds_frac < 1``) embed ``[log(u⁻¹v), q_v, q_u]`` for query u and neighbour v
        (:attr:`LieConv.swap_pairs`), which trained weights of the original rely on. False:
        ``[log(v⁻¹u), q_u, q_v]`` in every layer. Either is equivariant; without subsampling
        they are the same network.

    Notes
    -----
    ``apply(params, state, (coords, values, mask), train=False, rng=None)`` takes coords
    ``(bs, n, d)``, values ``(bs, n, chin)`` and a boolean mask ``(bs, n)`` (False on padding)
    (None: every point valid) and returns ``(bs, num_outputs)`` (pooled) and the new state.
    Outputs are arrays of the inputs' library and device. Empty batches (bs = 0) and empty
    clouds (n = 0) give outputs of those shapes, zero where a cloud has no points (as an
    all-padding cloud does), and the state unchanged.

    Examples
    --------
    >>> import numpy as np, lieconv_core as lc
    >>> net = lc.LieResNet(chin=1, num_outputs=2, k=16, num_layers=1, group=lc.groups.T(2))
    >>> params, state = net.init(seed=0, dtype="float64", backend="numpy")
    >>> x = np.random.default_rng(0).standard_normal((3, 10, 2))
    >>> out, state = net.apply(params, state, (x, np.ones((3, 10, 1)), np.ones((3, 10), bool)))
    >>> out.shape
    (3, 2)
    """

    def __init__(self, chin: int, num_outputs: int = 1, k: int | Sequence[int] = 1536,
                 nbhd: int | float | None = None, ds_frac: float | Sequence[float] = 1.0,
                 bn: bool = True, num_layers: int = 6, mean: bool = True, pool: bool = True,
                 liftsamples: int = 1, fill: float | Sequence[float] = 1 / 4,
                 group: Group | str | None = None, knn: bool = False, cache: bool = False,
                 original_pairs: bool = True):
        self.group = as_group(group) if group is not None else SE3(0.2)
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}")
        self.chin, self.num_outputs, self.num_layers = int(chin), int(num_outputs), int(num_layers)
        self.k = _check_widths([int(c) for c in _per_layer(k, num_layers + 1, "k")])
        self.ds_frac = _per_layer(ds_frac, num_layers, "ds_frac")
        self.fill = _per_layer(fill, num_layers, "fill")
        self.bn, self.mean, self.pool = bool(bn), bool(mean), bool(pool)
        if liftsamples < 1:
            raise ValueError(f"liftsamples must be >= 1, got {liftsamples}")
        self.liftsamples = int(liftsamples)
        if nbhd is not None and math.isinf(nbhd):
            nbhd = None
        self.blocks = [
            BottleBlock(self.k[i], self.k[i + 1],
                        LieConv(self.k[i] // 4, self.k[i + 1] // 4, self.group, nbhd=nbhd,
                                ds_frac=self.ds_frac[i], fill=self.fill[i], knn=knn, mean=mean,
                                bn=bn, cache=cache), bn=bn)
            for i in range(num_layers)
        ]
        self.original_pairs = bool(original_pairs)
        flips = 0  # subsampling layers so far: each transposes the original's pair tensor
        for block, ds in zip(self.blocks, self.ds_frac):
            if self.original_pairs and flips % 2 == 1:
                block.conv.swap_pairs = True
            flips += ds < 1

    def init_host(self, gen: np.random.Generator) -> tuple[dict, dict]:
        params: dict[str, Any] = {"lin_in": linear_init(gen, self.chin, self.k[0]), "blocks": {}}
        state: dict[str, Any] = {"blocks": {}}
        for i, block in enumerate(self.blocks):
            params["blocks"][str(i)], state["blocks"][str(i)] = block.init_host(gen)
        if self.bn:
            params["bn"], state["bn"] = bn_init(self.k[-1])
        params["lin_out"] = linear_init(gen, self.k[-1], self.num_outputs)
        return params, state

    def apply(self, params: dict, state: dict, inputs: tuple, train: bool = False,
              rng: Any = None) -> tuple[Any, dict]:
        """The network on a batch of point clouds.

        Parameters
        ----------
        params, state : dict
            From :meth:`init`.
        inputs : tuple
            ``(coords, values, mask)``: coords (bs, n, d), values (bs, n, chin), mask (bs, n)
            of bool (False on padding) or None (every point valid), all of one array library.
        train : bool, default False
            Training mode: batch statistics, and the running statistics and radii in the new state
            updated.
        rng : int, PortableDraws, lieconv_jax.JaxDraws or None
            Random draws for lifts and neighbourhoods: a seed, a draws object, or None for seed 0.

        Returns
        -------
        outputs : Array, shape (bs, num_outputs)
            Or (bs, n · ns, num_outputs) per lifted point when ``pool=False``; of the inputs'
            library and device.
        state : dict
            The new state (equal to ``state`` in eval mode).
        """
        coords, values, mask = inputs
        xp = validate_inputs(self.group, coords, values, mask, chin=self.chin)
        mask = default_mask(xp, coords, mask)
        _check_dtype(params, coords)
        draws = as_draws(rng)
        cloud = lift_unchecked(self.group, coords, values, mask, self.liftsamples, draws)
        return self.apply_lifted(params, state, cloud, train=train, rng=draws, xp=xp)

    def apply_lifted(self, params: dict, state: dict, cloud: Cloud, train: bool = False,
                     rng: Any = None, xp: Any = None) -> tuple[Any, dict]:
        """The network on an already lifted :class:`Cloud`.

        Parameters
        ----------
        params, state : dict
            From :meth:`init`.
        cloud : Cloud
            Elements (bs, m, E), orbit ids, values (bs, m, chin), mask (bs, m).
        train : bool, default False
            Training mode.
        rng : int, PortableDraws, lieconv_jax.JaxDraws or None
            Random draws.
        xp : Namespace, optional
            The cloud's array namespace (found from its arrays when None).

        Returns
        -------
        outputs : Array, shape (bs, num_outputs)
            Or (bs, m, num_outputs) when ``pool=False``.
        state : dict
            The new state.
        """
        from .._backend import array_namespace

        xp = xp or array_namespace(cloud.elems, cloud.values, cloud.mask)
        if 0 in tuple(cloud.mask.shape):
            return self._empty_output(xp, cloud), state
        ctx = self.context(xp, train, as_draws(rng))
        v = linear(params["lin_in"], zero_invalid(xp, cloud.values, cloud.mask))
        cloud = cloud._replace(values=zero_invalid(xp, v, cloud.mask))
        new_state: dict[str, Any] = {"blocks": {}}
        pairs = None  # all-pairs logs of the current elements, shared while nothing subsamples
        for i, block in enumerate(self.blocks):
            key = str(i)
            n = cloud.mask.shape[1]
            subsamples = block.conv.num_queries(n) < n
            if subsamples:
                pairs = None
            elif pairs is None:
                pairs = block.conv.pairs(xp, cloud)
            cloud, new_state["blocks"][key] = block.apply(params["blocks"][key],
                                                          state["blocks"][key], cloud, ctx,
                                                          pairs=pairs)
        v = _act(xp, params, state, "bn", cloud.values, cloud.mask, ctx, new_state, self.bn)
        v = linear(params["lin_out"], v)
        if not self.pool:
            return zero_invalid(xp, v, cloud.mask), new_state
        return masked_pool(xp, v, cloud.mask, mean=self.mean), new_state

    def _empty_output(self, xp: Any, cloud: Cloud) -> Any:
        """Zeros (bs, num_outputs) (or (bs, n·ns, num_outputs) unpooled) for a cloud with no
        entries: what an all-padding cloud gives."""
        bs, n = cloud.mask.shape
        shape = (bs, self.num_outputs) if self.pool else (bs, n, self.num_outputs)
        return xp.zeros(shape, dtype=cloud.values.dtype, device=_device(cloud.mask))


def _check_dtype(params: dict, coords: Any) -> None:
    from .._backend import array_namespace

    w = params["lin_in"]["w"]
    array_namespace(coords, w, names=("coords", "params"))  # same library and device
    if w.dtype != coords.dtype:
        raise TypeError(f"coords are {coords.dtype} but the parameters are {w.dtype}; "
                        "initialise with the inputs' dtype or cast the inputs")
