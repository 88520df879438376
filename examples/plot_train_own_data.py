"""
Training on your own point clouds
=================================

Your data as arrays — coordinates ``(n_samples, n_points, d)``, optional per-point features
``(n_samples, n_points, c)`` and a boolean mask ``(n_samples, n_points)`` that is False on
padding — plus one label per cloud. This example builds a small dataset of 3-D clouds of
different sizes (padded to a common length) and trains a T(3)-equivariant classifier on it
with :class:`lieconv_core.app.estimators.Classifier`, which runs the library's training
engine: minibatches, validation, the best checkpoint, a run folder. The same from the command
line: save the arrays with ``numpy.savez("train.npz", coords=..., mask=..., labels=...)`` and
run ``lieconv train pointcloud --data train.npz --kind classify --group T3 --out runs/mine``.
"""

# %%
import json
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from lieconv_core.app.estimators import Classifier
from lieconv_core.tasks.pointcloud import pad_clouds

SMALL = os.environ.get("LIECONV_EXAMPLE_SMALL") == "1"
n_samples, max_points, epochs = (48, 12, 2) if SMALL else (240, 16, 10)

# %%
# A toy task: is a cloud a stretched blob (label 1) or a round one (label 0)? Clouds have
# between half and all of ``max_points`` points and sit anywhere in space.
rng = np.random.default_rng(0)
labels = rng.integers(0, 2, n_samples)
clouds = []
for label in labels:
    n = rng.integers(max_points // 2, max_points + 1)
    x = rng.standard_normal((n, 3)) * (3.0 if label else 1.0, 1.0, 1.0)
    clouds.append(x + rng.normal(0, 5, 3))            # random position
coords, values, mask = pad_clouds(clouds)             # padded, mask False on the padding
n_train = n_samples * 3 // 4

# %%
# Train: translations T(3) as the symmetry (the blob's position must not matter). Without
# per-point features every point gets the same constant feature, and batch norm is switched
# off for that case. 10% of the training clouds are held out for validation; the run folder
# holds the config, the best and the latest checkpoint, the history and the curves.
out = Path(tempfile.mkdtemp()) / "run"
clf = Classifier(group="T3", epochs=epochs, batch_size=16, k=16, num_layers=2, progress=False)
clf.fit(coords[:n_train], labels[:n_train], mask=mask[:n_train], out=out)
print(clf.evaluate(coords[n_train:], labels[n_train:], mask=mask[n_train:]))
print(sorted(p.name for p in out.iterdir()))

# %%
# The trained model loads on any backend, numpy included, and predicts labels.
numpy_clf = Classifier.load(out, backend="numpy")
print(numpy_clf.predict(coords[n_train:], mask=mask[n_train:])[:10], labels[n_train:][:10])

history = json.loads((out / "history.json").read_text())
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(history["step_loss"])
ax.set_xlabel("step")
ax.set_ylabel("cross-entropy")
ax.set_title("training loss")
fig.tight_layout()
