"""Datasets. ``springs``: the 6-body spring system of the LieConv paper."""

from . import springs

__all__ = ["springs"]
