"""Training on your own point clouds: the Python API and ``lieconv train/evaluate/predict
pointcloud``, with generated data; bad files give errors naming the file and the field."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _clouds import radii, shapes, write_npz  # noqa: E402

from lieconv_core.app.cli import main  # noqa: E402
from lieconv_core.app.estimators import Classifier  # noqa: E402
from lieconv_core.tasks import DataError  # noqa: E402
from lieconv_core.tasks import pointcloud as P  # noqa: E402

SMALL = dict(k=16, num_layers=1, nbhd=12)


def test_classifier_from_numpy_arrays_beats_chance(torch1, tmp_path):
    """A T(2) LieResNet separates circles from segments (chance: 50%) after a few epochs;
    loaded on numpy it predicts the same labels."""
    x, y = shapes(240, seed=0)
    xt, yt = shapes(100, seed=1)
    clf = Classifier(group="T2", epochs=6, batch_size=16, lr=1e-2, progress=False,
                       dtype="float64", **SMALL)
    clf.fit(x, y, out=tmp_path / "run")
    acc = clf.evaluate(xt, yt)["accuracy"]
    assert acc >= 0.85, acc
    again = Classifier.load(tmp_path / "run", backend="numpy")
    np.testing.assert_array_equal(again.predict(xt), clf.predict(xt))
    assert {p.name for p in (tmp_path / "run").iterdir()} >= {
        "config.json", "model.safetensors", "last.safetensors", "history.json", "metrics.json",
        "curves.png"}


def test_cli_classify_evaluate_predict(torch1, tmp_path, capsys):
    x, y = shapes(200, seed=2)
    xt, yt = shapes(80, seed=3)
    train = write_npz(tmp_path / "train.npz", x, labels=y)
    test = write_npz(tmp_path / "test.npz", xt, labels=yt)
    run, ev, pr = tmp_path / "run", tmp_path / "ev", tmp_path / "pr"
    assert main(["train", "pointcloud", "--data", train, "--kind", "classify", "--group", "T2",
                 "--k", "16", "--num-layers", "1", "--nbhd", "12", "--epochs", "10",
                 "--batch-size", "16", "--lr", "1e-2", "--out", str(run), "--no-progress",
                 "--threads", "1"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["n_val"] == 20  # 10% held out with a fixed seed
    assert main(["evaluate", "pointcloud", "--checkpoint", str(run), "--data", test,
                 "--out", str(ev), "--no-progress"]) == 0
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.8 and metrics["n"] == 80
    assert (ev / "confusion.png").is_file()
    assert main(["predict", "pointcloud", "--checkpoint", str(run), "--data", test,
                 "--out", str(pr), "--backend", "numpy", "--no-progress"]) == 0
    with np.load(pr / "predictions.npz") as f:
        assert f["labels"].shape == (80,)
        assert np.mean(f["labels"] == yt) == pytest.approx(metrics["accuracy"])
    # lieconv compare: the run's best validation accuracy and when it was reached
    co = tmp_path / "co"
    assert main(["compare", str(run), str(run), "--out", str(co)]) == 0
    rows = json.loads((co / "compare.json").read_text())["runs"]
    evals = json.loads((run / "history.json").read_text())["evals"]
    best = max(evals, key=lambda e: e["val"]["accuracy"])
    assert len(rows) == 2 and rows[0]["metric"] == "accuracy"
    assert rows[0]["best"] == best["val"]["accuracy"]
    assert rows[0]["best_minutes"] == pytest.approx(best["train_seconds"] / 60)
    assert (co / "compare.png").stat().st_size > 1000
    assert main(["compare", str(run), "--out", str(co)]) == 2  # no silent replacement
    assert "overwrite" in capsys.readouterr().err
    assert main(["compare", str(run), "--out", str(co), "--overwrite"]) == 0
    assert main(["compare", str(tmp_path), "--out", str(tmp_path / "co2")]) == 2  # not a run


def test_cli_regression_beats_the_mean(torch1, tmp_path):
    """Targets: the radius of each cloud's circle; per-point features that carry no information
    (random weights), so the network runs with batch norm."""
    x, r = radii(200, seed=4)
    xt, rt = radii(60, seed=5)
    gen = np.random.default_rng(6)
    train = write_npz(tmp_path / "train.npz", x, targets=r, values=gen.uniform(size=(200, 10, 1)))
    test = write_npz(tmp_path / "test.npz", xt, targets=rt, values=gen.uniform(size=(60, 10, 1)))
    run, ev = tmp_path / "run", tmp_path / "ev"
    assert main(["train", "pointcloud", "--data", train, "--kind", "regress", "--group", "T2",
                 "--k", "16", "--num-layers", "1", "--nbhd", "10", "--epochs", "8",
                 "--batch-size", "16", "--lr", "1e-2", "--out", str(run), "--no-progress",
                 "--threads", "1"]) == 0
    assert main(["evaluate", "pointcloud", "--checkpoint", str(run), "--data", test,
                 "--out", str(ev), "--no-progress"]) == 0
    m = json.loads((ev / "metrics.json").read_text())
    baseline = np.mean(np.abs(rt - r.mean()))  # predicting the training mean
    assert m["mae"] < 0.6 * baseline and m["rmse"] >= m["mae"]
    assert (ev / "parity.png").is_file()


def _bad_file(tmp_path, kind):
    x, y = shapes(10)
    p = tmp_path / f"{kind}.npz"
    if kind == "missing-coords":
        np.savez(p, labels=y)
    elif kind == "lengths":
        np.savez(p, coords=x, labels=y[:7])
    elif kind == "label-range":
        np.savez(p, coords=x, labels=y + 5)
    elif kind == "nan":
        x[3, 2, 1] = np.nan
        np.savez(p, coords=x, labels=y)
    elif kind == "not-npz":
        p.write_text("hello")
    elif kind == "truncated":
        np.savez(p, coords=x, labels=y)
        p.write_bytes(p.read_bytes()[:200])
    elif kind == "no-labels":
        np.savez(p, coords=x, targets=np.ones((10, 1)))
    return p


@pytest.mark.parametrize("kind,msg", [
    ("missing-coords", "missing field 'coords'"),
    ("lengths", "disagree in n_samples: coords 10, labels 7"),
    ("label-range", "field 'labels' holds"),
    ("nan", "field 'coords' holds NaN or inf (sample 3)"),
    ("not-npz", "is not a readable .npz file"),
    ("truncated", "is not a readable .npz file"),
    ("no-labels", "needs the field 'labels'"),
])
def test_bad_files_name_the_file_and_field(kind, msg, tmp_path, capsys):
    p = _bad_file(tmp_path, kind)
    good = write_npz(tmp_path / "good.npz", *shapes(10)[:1], labels=shapes(10)[1])
    data, val = (str(p), good) if kind == "label-range" else (str(p), None)
    argv = ["train", "pointcloud", "--data", data, "--kind", "classify", "--group", "T2",
            "--out", str(tmp_path / "run"), "--no-progress"]
    if kind == "label-range":
        argv = [*argv[:3], good, *argv[4:], "--val-data", str(p)]
    del val
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert msg in err and p.name in err, err
    assert not (tmp_path / "run").exists()


def test_padding_variable_size_clouds():
    clouds = [np.ones((3, 2)), np.zeros((5, 2))]
    coords, values, mask = P.pad_clouds(clouds)
    assert coords.shape == (2, 5, 2) and values.shape == (2, 5, 1)
    assert mask.sum(1).tolist() == [3, 5]
    ds = P.from_arrays(coords, values, mask, labels=[0, 1])
    P.PointCloudTask().check(ds, P.PointCloudTask().model_config("classify", "T2", 1, 2))
    with pytest.raises(DataError, match="group SE3"):
        P.PointCloudTask().check(ds, P.PointCloudTask().model_config("classify", "SE3", 1, 2))
    with pytest.raises(ValueError, match="unknown group 'SE7'"):
        P.PointCloudTask().model_config("classify", "SE7", 1, 2)
