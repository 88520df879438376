"""
Choosing the backend at import time
===================================

``lieconv_core`` reads the environment variable ``LIECONV_BACKEND`` once, when it is first
imported. It decides the array library (and device) of the functions that take no arrays —
``net.init``, data generation, the CLI. Functions that take arrays ignore it and follow their
inputs. Set it in the shell (``LIECONV_BACKEND=torch python train.py``) or in Python *before*
the first ``import lieconv_core``.

Each run below is a fresh Python process, because the variable only counts at the first import.
"""

# %%
import os
import subprocess
import sys
from importlib.util import find_spec

SNIPPET = """
import lieconv_core as lc
net = lc.LieResNet(chin=1, num_outputs=1, k=8, num_layers=1, group=lc.groups.T(2))
params, state = net.init(seed=0)
print(f"{lc.BACKEND:>16}: init gives {type(params['lin_in']['w']).__module__}."
      f"{type(params['lin_in']['w']).__name__}")
"""

for backend in ["numpy", "torch", "jax", "array_api_strict"]:
    if find_spec(backend) is None:
        print(f"{backend:>16}: not installed")
        continue
    env = {**os.environ, "LIECONV_BACKEND": backend}
    run = subprocess.run([sys.executable, "-c", SNIPPET], env=env, capture_output=True,
                         text=True, check=True)
    print(run.stdout.rstrip())

# %%
# An unknown name is an error at import that lists the choices:
env = {**os.environ, "LIECONV_BACKEND": "tensorflow"}
run = subprocess.run([sys.executable, "-c", "import lieconv_core"], env=env,
                     capture_output=True, text=True)
print(run.stderr.strip().splitlines()[-1])

# %%
# Inside one process the default can be overridden per call, and array inputs always win:
# numpy in, numpy out; torch in, torch out.
import numpy as np

import lieconv_core as lc

net = lc.LieResNet(chin=1, num_outputs=1, k=8, num_layers=1, group=lc.groups.T(2))
coords = np.random.default_rng(0).standard_normal((2, 10, 2))
inputs = (coords, np.ones((2, 10, 1)), np.ones((2, 10), bool))
params, state = net.init(seed=0, dtype="float64", backend="numpy")
out, _ = net.apply(params, state, inputs)
print("numpy inputs ->", type(out).__module__, out.ravel())

if find_spec("torch") is not None:
    import torch

    params_t, state_t = net.init(seed=0, dtype="float64", backend="torch")
    out_t, _ = net.apply(params_t, state_t, tuple(torch.as_tensor(a) for a in inputs))
    print("torch inputs ->", type(out_t).__module__, out_t.ravel().tolist())
