"""Lie groups for LieConv: exp/log, lifts, pair embeddings and distances (array API only)."""

import inspect
from typing import Any

from .base import Group, supports_group
from .rxso2 import Rx, RxSO2
from .se2 import SE2
from .se3 import SE3
from .so2 import SO2
from .so3 import SO3
from .subgroup import Subgroup
from .translation import T, Tx, Ty
from .trivial import Trivial

#: names accepted by :func:`get` / :func:`by_name` (CLI, config files, ``group="SE2"`` in the
#: models) -> constructors; "Trivial" is "Trivial2"
GROUPS = {
    "T2": lambda: T(2), "T3": lambda: T(3), "Trivial2": lambda: Trivial(2),
    "Trivial3": lambda: Trivial(3), "Trivial": lambda: Trivial(2), "Tx": Tx, "Ty": Ty,
    "SO2": SO2, "RxSO2": RxSO2, "Rx": Rx, "SE2": SE2, "SO3": SO3, "SE3": SE3,
}


def names() -> list[str]:
    """The group names :func:`get` accepts."""
    return list(GROUPS)


def get(name: str, **kwargs: Any) -> Group:
    """Group from its short name, e.g. ``get("SE2", alpha=0.05)``; ``kwargs`` go to the group's
    constructor (alpha for SO2, RxSO2, Rx, SE2, SO3, SE3). Unknown names and arguments raise
    ValueError listing the choices."""
    if name not in GROUPS:
        raise ValueError(f"unknown group {name!r}; choose one of: {', '.join(GROUPS)}")
    ctor = GROUPS[name]
    params = list(inspect.signature(ctor).parameters)
    extra = [k for k in kwargs if k not in params]
    if extra:
        raise ValueError(f"group {name!r} takes no argument {extra[0]!r} "
                         f"(it takes: {', '.join(params) or 'none'})")
    return ctor(**kwargs)


def by_name(name: str) -> Group:
    """Group from its short name (see ``GROUPS``); unknown names raise ValueError listing them."""
    return get(name)


def as_group(group: Any) -> Group:
    """A :class:`Group` as is, or a name from :func:`names` as that group (default arguments).
    Anything else raises TypeError; unknown names ValueError listing the choices."""
    if isinstance(group, Group):
        return group
    if isinstance(group, str):
        return get(group)
    raise TypeError(f"group must be a Group or one of the names {', '.join(GROUPS)}; "
                    f"got {type(group).__name__}")


__all__ = ["Group", "Trivial", "T", "Tx", "Ty", "SO2", "RxSO2", "Rx", "SE2", "SO3", "SE3",
           "Subgroup", "GROUPS", "by_name", "get", "names", "as_group", "supports_group"]
