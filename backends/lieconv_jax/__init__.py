"""lieconv_jax: the jax adapter and jax-idiomatic helpers (pure functions, pytrees) for
lieconv_core.

Importing this package does not change jax's global configuration (no x64 switch).
"""

from .adapter import ADAPTER, JaxAdapter
from .random import JaxDraws

__all__ = ["ADAPTER", "JaxAdapter", "JaxDraws"]
