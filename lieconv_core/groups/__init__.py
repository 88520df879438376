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
    """The group names :func:`get` accepts.

    Returns
    -------
    list of str
        The keys of ``GROUPS``.
    """
    return list(GROUPS)


def get(name: str, **kwargs: Any) -> Group:
    """A group from its short name.

    Parameters
    ----------
    name : str
        One of :func:`names`, e.g. ``"SE2"``.
    **kwargs
        Arguments of the group's constructor (``alpha`` for SO2, RxSO2, Rx, SE2, SO3, SE3).

    Returns
    -------
    Group
        The group.

    Raises
    ------
    ValueError
        For an unknown name or argument, listing the choices.

    Examples
    --------
    >>> get("SE2", alpha=0.05)
    SE2(alpha=0.05)
    """
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
    """A group from its short name with default arguments (see ``GROUPS``).

    Parameters
    ----------
    name : str
        One of :func:`names`.

    Returns
    -------
    Group
        The group.

    Raises
    ------
    ValueError
        For an unknown name, listing the choices.
    """
    return get(name)


def as_group(group: Any) -> Group:
    """A :class:`Group` as is, or a name from :func:`names` as that group (default arguments).

    Parameters
    ----------
    group : Group or str
        A group or its name.

    Returns
    -------
    Group
        The group.

    Raises
    ------
    TypeError
        For anything else.
    ValueError
        For an unknown name, listing the choices.
    """
    if isinstance(group, Group):
        return group
    if isinstance(group, str):
        return get(group)
    raise TypeError(f"group must be a Group or one of the names {', '.join(GROUPS)}; "
                    f"got {type(group).__name__}")


__all__ = ["Group", "Trivial", "T", "Tx", "Ty", "SO2", "RxSO2", "Rx", "SE2", "SO3", "SE3",
           "Subgroup", "GROUPS", "by_name", "get", "names", "as_group", "supports_group"]
