"""lieconv_core: LieConv (Finzi et al., ICML 2020) written once against the Python array API.

Pick the backend for functions that take no arrays with ``LIECONV_BACKEND`` (numpy | torch | jax |
cupy | array_api_strict; default numpy), read once at import. Functions that take arrays follow
their inputs; ``asarray`` converts host data (numpy arrays, lists) to the selected backend.
Importing this package imports no framework.
"""

from . import groups
from ._backend import (
    BACKEND,
    BackendEntry,
    array_namespace,
    backend_names,
    namespace_for,
    register_backend,
)
from .arrays import Array, Namespace, asarray
from .cloud import Cloud, lift
from .nn import BottleBlock, LieConv, LieResNet
from .random import PortableDraws

__version__ = "0.1.0"

__all__ = ["groups", "BACKEND", "BackendEntry", "backend_names", "register_backend",
           "array_namespace", "namespace_for", "asarray", "Array", "Namespace", "Cloud", "lift",
           "LieConv", "BottleBlock", "LieResNet", "PortableDraws", "__version__"]
