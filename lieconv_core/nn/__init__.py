"""Functional LieConv layers and networks."""

from .layers import masked_batchnorm, masked_pool, swish
from .lieconv import LieConv
from .module import Ctx, Model, flatten, unflatten
from .resnet import BottleBlock, LieResNet

__all__ = ["LieConv", "BottleBlock", "LieResNet", "Model", "Ctx", "masked_batchnorm",
           "masked_pool", "swish", "flatten", "unflatten"]
