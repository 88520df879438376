"""lieconv_torch: the torch adapter and torch-idiomatic wrappers (nn.Module) for lieconv_core."""

from .adapter import ADAPTER, TorchAdapter
from .nn import DynamicsModule, FunctionalModule

__all__ = ["ADAPTER", "TorchAdapter", "FunctionalModule", "DynamicsModule"]
