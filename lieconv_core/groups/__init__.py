"""Lie groups for LieConv: exp/log, lifts, pair embeddings and distances (array API only)."""

from .base import Group
from .rxso2 import Rx, RxSO2
from .se2 import SE2
from .se3 import SE3
from .so2 import SO2
from .so3 import SO3
from .subgroup import Subgroup
from .translation import T, Tx, Ty
from .trivial import Trivial

#: names accepted by :func:`by_name` (CLI and config files)
GROUPS = {
    "Trivial": lambda: Trivial(2), "Trivial3": lambda: Trivial(3), "T2": lambda: T(2),
    "T3": lambda: T(3), "Tx": Tx, "Ty": Ty, "SO2": SO2, "RxSO2": RxSO2, "Rx": Rx, "SE2": SE2,
    "SO3": SO3, "SE3": SE3,
}


def by_name(name: str) -> Group:
    """Group from its short name (see ``GROUPS``); unknown names raise ValueError listing them."""
    if name not in GROUPS:
        raise ValueError(f"unknown group {name!r}; choose one of: {', '.join(GROUPS)}")
    return GROUPS[name]()


__all__ = ["Group", "Trivial", "T", "Tx", "Ty", "SO2", "RxSO2", "Rx", "SE2", "SO3", "SE3",
           "Subgroup", "GROUPS", "by_name"]
