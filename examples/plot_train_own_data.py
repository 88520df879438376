"""
Training on your own point clouds
=================================

Your data as three arrays — coordinates ``(n_samples, n_points, d)``, per-point features
``(n_samples, n_points, c)`` and a boolean mask ``(n_samples, n_points)`` that is False on
padding — plus one label per cloud. This example builds a small dataset of 3-D clouds of
different sizes (padded to a common length), wraps a T(3)-equivariant LieResNet in a torch
``nn.Module`` with :class:`lieconv_torch.FunctionalModule` and trains it with a plain
``torch.optim`` loop. Save your own arrays with ``numpy.savez`` in the same layout to train on
them (see the training page of the documentation for the ``.npz`` format).
"""

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import torch
from lieconv_torch import FunctionalModule

import lieconv_core as lc

SMALL = os.environ.get("LIECONV_EXAMPLE_SMALL") == "1"
n_samples, max_points, epochs = (32, 12, 2) if SMALL else (128, 16, 10)
torch.manual_seed(0)

# %%
# A toy task: is a cloud a stretched blob (label 1) or a round one (label 0)? Clouds have
# between half and all of ``max_points`` points and sit anywhere in space.
rng = np.random.default_rng(0)
labels = rng.integers(0, 2, n_samples)
coords = rng.standard_normal((n_samples, max_points, 3))
coords[labels == 1, :, 0] *= 3.0                     # stretch along x
coords += rng.normal(0, 5, (n_samples, 1, 3))         # random position
n_valid = rng.integers(max_points // 2, max_points + 1, n_samples)
mask = np.arange(max_points)[None, :] < n_valid[:, None]
values = np.ones((n_samples, max_points, 1))          # no per-point features: a constant
coords[~mask] = 0.0                                   # padding may hold anything

n_train = n_samples * 3 // 4
data = [torch.as_tensor(a) for a in (coords, values, mask, labels)]
data[0], data[1] = data[0].float(), data[1].float()
train = [a[:n_train] for a in data]
test = [a[n_train:] for a in data]

# %%
# The model: translations T(3) as the symmetry (the blob's position must not matter), two
# classes out; every point is a neighbour of every other (``nbhd=None``), which suits small
# clouds. Batch norm is off (``bn=False``): with a constant input feature the first layer's
# channels have almost no spread to normalise. ``FunctionalModule`` registers the parameters as
# ``nn.Parameter`` and the state (the ball radius; batch-norm statistics if on) as buffers.
net = lc.LieResNet(chin=1, num_outputs=2, k=16, num_layers=2, nbhd=None, bn=False,
                   group=lc.groups.T(3))
params, state = net.init(seed=0, dtype="float32", backend="torch")
model = FunctionalModule(net, params, state)
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
batch_size = 16


def accuracy(split):
    model.eval()
    with torch.no_grad():
        logits = model(*split[:3], rng=0)
    return (logits.argmax(-1) == split[3]).float().mean().item()


history = []
for epoch in range(epochs):
    model.train()
    order = torch.randperm(n_train)
    for step, start in enumerate(range(0, n_train, batch_size)):
        idx = order[start:start + batch_size]
        logits = model(*(a[idx] for a in train[:3]), rng=epoch * 1000 + step)
        loss = torch.nn.functional.cross_entropy(logits, train[3][idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    print(f"epoch {epoch}: loss {loss.item():.3f}, test accuracy {accuracy(test):.2f}")

# %%
# The trained parameters are ordinary torch state: ``torch.save(model.state_dict(), path)``
# works, and ``state_dict`` keys equal the library's portable flat names.
print(list(model.state_dict())[:4])

fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(history)
ax.set_xlabel("step")
ax.set_ylabel("cross-entropy")
ax.set_title("training loss")
fig.tight_layout()
