"""
A LieResNet as a feature extractor for scikit-learn
===================================================

A LieResNet takes numpy arrays and returns numpy arrays, so it drops into a scikit-learn
pipeline as an ordinary transformer. Here an *untrained* network turns each 2-D point cloud into
a fixed-length feature vector, and a logistic regression on those features tells shapes apart.
The transformer moves each cloud's centroid to the origin and uses the rotation group SO(2),
whose lift is deterministic, so the features are exactly invariant to rotations and shifts of a
cloud: the classifier works on test clouds in any pose without rotation augmentation. (SE(2)
would give the same invariance without centring, but its random stabilizer samples make the
features vary slightly from draw to draw.)
"""

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import lieconv_core as lc

SMALL = os.environ.get("LIECONV_EXAMPLE_SMALL") == "1"
n_clouds, n_points = (24, 16) if SMALL else (150, 32)

# %%
# Data: outlines of three shapes (circle, square, triangle), each with a random rotation,
# translation and jitter. The label is the shape.


def outline(kind, t):
    """Points on the unit outline of shape ``kind`` at parameters t in [0, 1)."""
    ang = 2 * np.pi * t
    if kind == 0:
        return np.stack([np.cos(ang), np.sin(ang)], -1)
    sides = 4 if kind == 1 else 3
    corners = np.stack([np.cos(2 * np.pi * np.arange(sides + 1) / sides),
                        np.sin(2 * np.pi * np.arange(sides + 1) / sides)], -1)
    s = t * sides
    i = np.floor(s).astype(int)
    f = (s - i)[:, None]
    return (1 - f) * corners[i] + f * corners[i + 1]


def make_clouds(n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n)
    coords = np.empty((n, n_points, 2))
    for j, kind in enumerate(labels):
        pts = outline(kind, rng.uniform(0, 1, n_points))
        th = rng.uniform(-np.pi, np.pi)
        rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
        coords[j] = pts @ rot.T + rng.normal(0, 2, size=2) + rng.normal(0, 0.03, (n_points, 2))
    return coords, labels


X_train, y_train = make_clouds(n_clouds, seed=0)
X_test, y_test = make_clouds(n_clouds, seed=1)

# %%
# The transformer: a fixed, randomly initialised SO(2) LieResNet with 16 pooled outputs.
# ``transform`` takes coordinates (n_clouds, n_points, 2) and returns (n_clouds, 16) features.


class LieConvFeatures(TransformerMixin, BaseEstimator):
    def __init__(self, width=32, num_features=16, seed=0):
        self.width, self.num_features, self.seed = width, num_features, seed

    def fit(self, X, y=None):
        self.net_ = lc.LieResNet(chin=1, num_outputs=self.num_features, k=self.width,
                                 num_layers=2, nbhd=16, liftsamples=1, bn=False,
                                 group=lc.groups.SO2())
        self.params_, self.state_ = self.net_.init(seed=self.seed, dtype="float64",
                                                   backend="numpy")
        return self

    def transform(self, X):
        X = np.asarray(X, dtype=np.float64)
        X = X - X.mean(axis=1, keepdims=True)  # translations are removed here, rotations by SO(2)
        values = np.ones((*X.shape[:2], 1))
        mask = np.ones(X.shape[:2], bool)
        out, _ = self.net_.apply(self.params_, self.state_, (X, values, mask), rng=self.seed)
        return out


pipe = make_pipeline(LieConvFeatures(), StandardScaler(), LogisticRegression(max_iter=2000))
pipe.fit(X_train, y_train)
print(f"test accuracy: {pipe.score(X_test, y_test):.2f}")

# %%
# Rotating every test cloud by the same angle leaves the features, and so the predictions,
# unchanged up to rounding error.
th = 1.0
rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
feats = pipe[0].transform(X_test)
feats_rot = pipe[0].transform(X_test @ rot.T + 5.0)
print("max change of the features under a rotation and shift:", np.abs(feats - feats_rot).max())

# %%
# Two of the features (standardised as the classifier sees them), coloured by shape.
feats = pipe[:2].transform(X_test)
fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
for kind, name in enumerate(["circle", "square", "triangle"]):
    j = int(np.flatnonzero(y_test == kind)[0])
    axes[0].plot(*X_test[j].T, ".", label=name)
    sel = y_test == kind
    axes[1].scatter(feats[sel, 0], feats[sel, 1], s=10, label=name)
axes[0].set_aspect("equal")
axes[0].set_title("one test cloud per shape")
axes[1].set_title("two of the 16 invariant features")
axes[1].set_xlabel("feature 0")
axes[1].set_ylabel("feature 1")
axes[1].legend()
fig.tight_layout()
