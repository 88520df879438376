"""Datasets. ``springs``: the 6-body spring system of the LieConv paper (DESIGN §5)."""

from . import springs

__all__ = ["springs"]
