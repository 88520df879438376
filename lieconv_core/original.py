"""Import the trained weights of the original LieConv (github.com/mfinzi/LieConv).

:func:`from_original` maps the ``state_dict`` of an original ``LieResNet`` — or of a model built
on it: ``ImgLieResnet``, ``MolecLieResNet``, the dynamics models ``HLieResNet`` / ``FLieResnet``
— onto the params and state of a lieconv :class:`~lieconv_core.nn.LieResNet` (or a dynamics model
holding one as ``.net``) built with the same hyperparameters. This library follows the original's
conventions by default (docs/original.md), so the imported network computes the same function.

The original's module tree, and where each piece goes (``L`` = number of BottleBlocks)::

    net.0.module                    Linear(chin -> k0)         -> lin_in
    net.{i}.net.0 / .3 / .6         MaskBatchNormNd             -> blocks.{i-1}.bn0 / bn1 / bn2
    net.{i}.net.2.module / .8.module Linear                    -> blocks.{i-1}.lin0 / lin1
    net.{i}.conv (= net.{i}.net.5)  LieConv                    -> blocks.{i-1}.conv
        weightnet.{0,3,6}.module    weight-net Linear layers   -> wn.{0,1,2}.lin
        weightnet.{1,4,7}           weight-net batch norms     -> wn.{0,1,2}.bn (+ state)
        linear                      Linear(16·cin -> cout)     -> out (rows c·16 + a, as stored)
        r                           ball radius buffer         -> state r
    net.{L+1}                       final MaskBatchNormNd      -> bn
    net.{L+3}.module                Linear(k_L -> outputs)     -> lin_out

torch's Linear stores weight as (out, in); lieconv's ``w`` is (in, out). Batch norms give
``weight``/``bias`` (params ``w``/``b``) and ``running_mean``/``running_var`` (state ``mean``/
``var``); ``num_batches_tracked`` is accepted and unused (the original's momentum is fixed).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from .nn.lieconv import R_AVG_MOMENTUM

#: a checkpoint may wrap the state_dict under one of these keys (oil's Trainer: model_state)
WRAPPER_KEYS = ("model_state", "state_dict", "model")
#: the key that locates the network's prefix (DataParallel "module.", Sequential(aug, model) "1.")
ANCHOR = "net.0.module.weight"


class OriginalWeightsError(ValueError):
    """A state_dict that does not fit the lieconv model: unknown, missing or misshapen keys."""


def from_original(state_dict: Mapping[str, Any] | str | os.PathLike, net: Any
                  ) -> tuple[dict, dict]:
    """Params and state (nested dicts of float64 numpy arrays, for any backend) of ``net`` from
    the weights of the original implementation.

    Parameters
    ----------
    state_dict : mapping or path
        The original model's ``state_dict()``: key names -> arrays (torch tensors or anything
        ``numpy.asarray`` takes), or the path of a ``.pt`` file holding one (read with
        ``torch.load(weights_only=True)``; a dict wrapping it under ``model_state``,
        ``state_dict`` or ``model`` is unwrapped). A common key prefix (``module.``, ``1.``) is
        stripped. Each BottleBlock's conv may appear under ``net.{i}.conv.`` and/or its alias
        ``net.{i}.net.5.`` (equal values required where both are given).
    net : LieResNet or a model with a ``.net`` LieResNet (dynamics models)
        Built with the original model's hyperparameters (group and α, k, num_layers, bn, ...).

    Returns
    -------
    params, state : dict
        As ``net.init_host`` makes them: params (weights, biases, batch-norm affine parameters)
        and state (batch-norm running statistics; each conv's radius ``r``, and any other scalar
        radius statistic of the conv state, set to the original's ``r``).

    Raises
    ------
    OriginalWeightsError
        Naming the key: an unknown key, a missing key, or a shape that does not match.
    """
    from .nn.resnet import LieResNet

    sd = _strip_prefix(_as_numpy_dict(_load(state_dict)))
    res = net if isinstance(net, LieResNet) else getattr(net, "net", None)
    if not isinstance(res, LieResNet):
        raise TypeError(f"net must be a LieResNet or hold one as .net, got {type(net).__name__}")
    params, state = res.init_host(np.random.default_rng(0))
    plan = _plan(res)
    _merge_aliases(sd, len(res.blocks))
    used: set[str] = set()
    for key, (tree, path, kind) in plan.items():
        if key not in sd:
            raise OriginalWeightsError(f"missing key {key!r} in the original state_dict")
        used.add(key)
        target = params if tree == "params" else state
        _put(target, path, sd[key], kind, key)
    for i in range(len(res.blocks)):
        key = f"net.{i + 1}.conv.r"
        conv_state = state["blocks"][str(i)]["conv"]
        if "r_train" in conv_state:  # the controller continues from the original's radius,
            # and the running average weighs it like a long history
            conv_state["r_train"] = np.array(float(sd[key]))
            conv_state["r_count"] = np.array(1 / R_AVG_MOMENTUM)
    ignored = {k for k in sd if k.endswith("num_batches_tracked")}
    unknown = sorted(set(sd) - used - ignored)
    if unknown:
        raise OriginalWeightsError(
            f"unknown key {unknown[0]!r} in the original state_dict (not part of a "
            f"{type(net).__name__} with these hyperparameters; {len(unknown)} unknown in all)")
    return params, state


def _load(src: Any) -> Mapping[str, Any]:
    """A mapping from a mapping or a .pt path; unwraps checkpoint dicts."""
    if isinstance(src, str | os.PathLike):
        from lieconv_torch.checkpoint import load_pt  # the original's .pt files are torch's

        src = load_pt(src)
    if not isinstance(src, Mapping):
        raise TypeError(f"state_dict must be a mapping or a path, got {type(src).__name__}")
    for k in WRAPPER_KEYS:
        if k in src and isinstance(src[k], Mapping):
            return src[k]
    return src


def _as_numpy_dict(sd: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Key -> numpy array (torch tensors detached and moved to the host)."""
    out = {}
    for k, v in sd.items():
        if hasattr(v, "detach"):
            v = v.detach().cpu().numpy()
        out[str(k)] = np.asarray(v)
    return out


def _strip_prefix(sd: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Remove the prefix before ``net.0.module.weight`` from every key."""
    anchors = sorted((k[: -len(ANCHOR)] for k in sd if k.endswith(ANCHOR)
                      and (len(k) == len(ANCHOR) or k[-len(ANCHOR) - 1] == ".")), key=len)
    if not anchors:
        raise OriginalWeightsError(f"missing key {ANCHOR!r} (the input linear) in the state_dict")
    prefix = anchors[0]
    outside = [k for k in sd if not k.startswith(prefix)]
    if outside:
        raise OriginalWeightsError(f"unknown key {outside[0]!r} outside the network "
                                   f"(prefix {prefix!r})")
    return {k[len(prefix):]: v for k, v in sd.items()}


def _merge_aliases(sd: dict[str, np.ndarray], nblocks: int) -> None:
    """Fold ``net.{i}.net.5.*`` (the conv inside the block's Sequential) into ``net.{i}.conv.*``
    (in place); both given: they must be equal."""
    for k in list(sd):
        m = re.fullmatch(r"net\.(\d+)\.net\.5\.(.*)", k)
        if not m or not 1 <= int(m[1]) <= nblocks:
            continue
        main = f"net.{m[1]}.conv.{m[2]}"
        if main in sd and not (sd[main].shape == sd[k].shape and np.array_equal(sd[main], sd[k])):
            raise OriginalWeightsError(f"key {k!r} differs from its alias {main!r}")
        sd[main] = sd.pop(k)


def _plan(net: Any) -> dict[str, tuple[str, tuple[str, ...], str]]:
    """Original key -> (tree, path in that tree, kind) for every key the model needs; kind is
    'linear_w' (transposed), or 'copy'."""
    plan: dict[str, tuple[str, tuple[str, ...], str]] = {}

    def linear(src: str, *path: str) -> None:
        plan[f"{src}.weight"] = ("params", (*path, "w"), "linear_w")
        plan[f"{src}.bias"] = ("params", (*path, "b"), "copy")

    def bn(src: str, ppath: tuple[str, ...], spath: tuple[str, ...]) -> None:
        plan[f"{src}.weight"] = ("params", (*ppath, "w"), "copy")
        plan[f"{src}.bias"] = ("params", (*ppath, "b"), "copy")
        plan[f"{src}.running_mean"] = ("state", (*spath, "mean"), "copy")
        plan[f"{src}.running_var"] = ("state", (*spath, "var"), "copy")

    linear("net.0.module", "lin_in")
    for i, block in enumerate(net.blocks):
        o, b = f"net.{i + 1}", ("blocks", str(i))
        linear(f"{o}.net.2.module", *b, "lin0")
        linear(f"{o}.net.8.module", *b, "lin1")
        if block.bn:
            for j, name in ((0, "bn0"), (3, "bn1"), (6, "bn2")):
                bn(f"{o}.net.{j}", (*b, name), (*b, name))
        c = (*b, "conv")
        for j in range(3):
            linear(f"{o}.conv.weightnet.{3 * j}.module", *c, "wn", str(j), "lin")
            if block.conv.bn:
                bn(f"{o}.conv.weightnet.{3 * j + 1}", (*c, "wn", str(j), "bn"),
                   (*c, "wn", str(j)))
        linear(f"{o}.conv.linear", *c, "out")
        plan[f"{o}.conv.r"] = ("state", (*c, "r"), "copy")
    nl = len(net.blocks)
    if net.bn:
        bn(f"net.{nl + 1}", ("bn",), ("bn",))
    linear(f"net.{nl + 3}.module", "lin_out")
    return plan


def _put(tree: dict, path: tuple[str, ...], value: np.ndarray, kind: str, key: str) -> None:
    """tree[path] = value (float64; transposed for 'linear_w'), checking the template's shape."""
    node = tree
    for p in path[:-1]:
        node = node[p]
    want = np.shape(node[path[-1]])
    v = np.asarray(value, dtype=np.float64)
    if kind == "linear_w":
        if v.ndim != 2:
            raise OriginalWeightsError(f"key {key!r}: expected a 2-d Linear weight, got shape "
                                       f"{v.shape}")
        v = v.T
    if v.shape != want:
        got = v.T.shape if kind == "linear_w" else v.shape
        exp = want[::-1] if kind == "linear_w" else want
        raise OriginalWeightsError(f"key {key!r}: shape {got} does not match the model's {exp}")
    node[path[-1]] = np.array(v)
