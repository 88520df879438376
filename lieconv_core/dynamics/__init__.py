"""Learned dynamics: integrators (RK4, leapfrog) and Hamiltonian / direct models (the paper's)."""

from .integrators import leapfrog_step, odeint, rk4_step
from .models import FC, HFC, MODELS, FLieResNet, HLieResNet, from_config, make_model

__all__ = ["rk4_step", "leapfrog_step", "odeint", "HLieResNet", "FLieResNet", "FC", "HFC",
           "MODELS", "make_model", "from_config"]
