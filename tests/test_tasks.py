"""RotMNIST and QM9 data (loaders on files the tests write), the schedule both trainers follow,
and eval mode that behaves like training on pixel grids."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lieconv_core.app.cli import main
from lieconv_core.app.training.schedule import lr_at
from lieconv_core.nn.presets import image_mask_index
from lieconv_core.tasks import DataError, get_task
from lieconv_core.tasks import qm9 as Q
from lieconv_core.tasks import rotmnist as R


# --- RotMNIST ------------------------------------------------------------------------------------
def _amat(path, rows):
    path.write_text("\n".join(" ".join(f"{v:.6g}" for v in r) for r in rows) + "\n")
    return path


def test_amat_rows_become_cropped_pixel_clouds(tmp_path):
    gen = np.random.default_rng(0)
    imgs = gen.uniform(size=(3, 28, 28))
    rows = [np.concatenate([im.ravel(), [lab]]) for im, lab in zip(imgs, (4, 0, 9))]
    ds = R.load_amat(_amat(tmp_path / "a.amat", rows))
    assert ds["pixels"].shape == (3, 648) and ds["labels"].tolist() == [4, 0, 9]
    idx = R.image_mask_index()
    np.testing.assert_allclose(ds["pixels"], imgs.reshape(3, -1)[:, idx], rtol=1e-5)
    batch = get_task("rotmnist").inputs(ds.take(slice(0, 2)), {})
    assert batch["coords"].shape == (2, 648, 2) and batch["values"].shape == (2, 648, 1)
    assert np.linalg.norm(batch["coords"], axis=-1).max() < 15


@pytest.mark.parametrize("bad,msg", [("short", "line 2: 700 values, expected 785"),
                                     ("text", "line 1: not a row of numbers"),
                                     ("label", "the last column (the label)"),
                                     ("nan", "NaN or inf")])
def test_bad_amat_files_name_file_and_line(bad, msg, tmp_path):
    row = np.concatenate([np.zeros(784), [3]])
    rows = [row, row]
    if bad == "short":
        rows[1] = row[:700]
    elif bad == "label":
        rows[1] = np.concatenate([np.zeros(784), [12]])
    elif bad == "nan":
        rows[0] = np.concatenate([np.full(784, np.nan), [3]])
    path = _amat(tmp_path / "x.amat", rows)
    if bad == "text":
        path.write_text("hello world\n")
    with pytest.raises(DataError, match=msg.replace("(", r"\(").replace(")", r"\)")) as e:
        R.load_amat(path)
    assert str(path) in str(e.value)


def _idx(path, arr):
    arr = np.asarray(arr, np.uint8)
    head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    path.write_bytes(head + arr.tobytes())


def _mnist_dir(tmp_path, n_train=40, n_test=20):
    gen = np.random.default_rng(1)
    d = tmp_path / "mnist"
    d.mkdir()
    _idx(d / R.IDX_FILES["train_images"], gen.integers(0, 256, (n_train, 28, 28)))
    _idx(d / R.IDX_FILES["train_labels"], gen.integers(0, 10, n_train))
    _idx(d / R.IDX_FILES["test_images"], gen.integers(0, 256, (n_test, 28, 28)))
    _idx(d / R.IDX_FILES["test_labels"], gen.integers(0, 10, n_test))
    return d


def test_recreation_from_idx_files_is_seeded_and_split(tmp_path):
    d = _mnist_dir(tmp_path)
    sizes = {"train": 30, "val": 10, "test": 20}
    a, b = R.recreate(d, seed=0, sizes=sizes), R.recreate(d, seed=0, sizes=sizes)
    assert {k: len(v) for k, v in a.items()} == sizes
    np.testing.assert_array_equal(a["test"]["pixels"], b["test"]["pixels"])
    c = R.recreate(d, seed=1, sizes=sizes)
    assert not np.array_equal(a["train"]["pixels"], c["train"]["pixels"])
    (d / R.IDX_FILES["test_labels"]).write_bytes(b"\0\0\x08\x01\0\0\0\x14" + b"\0" * 5)
    with pytest.raises(DataError, match="truncated"):
        R.recreate(d, sizes=sizes)
    with pytest.raises(DataError, match="--mnist-dir"):
        R.mnist_dir(tmp_path / "nowhere")


def test_upright_split_has_the_same_digits_unrotated(tmp_path):
    d = _mnist_dir(tmp_path)
    sizes = {"train": 30, "val": 10, "test": 20}
    rot, up = R.recreate(d, seed=0, sizes=sizes), R.recreate(d, seed=0, sizes=sizes, upright=True)
    images = np.concatenate([R.read_idx(d / R.IDX_FILES["train_images"]),
                             R.read_idx(d / R.IDX_FILES["test_images"])]) / 255.0
    flat = images.reshape(len(images), -1)[:, image_mask_index()]
    for name in sizes:
        np.testing.assert_array_equal(up[name]["labels"], rot[name]["labels"])
        # every upright digit is one of MNIST's own, pixel for pixel
        rows = [np.flatnonzero(np.all(np.isclose(flat, px, atol=1e-6), axis=1))
                for px in up[name]["pixels"]]
        assert all(len(r) >= 1 for r in rows)
        assert not np.allclose(up[name]["pixels"], rot[name]["pixels"], atol=1e-2)  # control
    _, info = R.load_splits(None, str(d), 0, sizes, upright=True)
    assert info["upright"] is True and info["data"] == "upright MNIST digits"
    with pytest.raises(ValueError, match="upright"):
        R.load_splits(("a.amat", "b.amat"), upright=True)


def test_rotation_by_quarter_turns_is_exact():
    img = np.random.default_rng(2).uniform(size=(1, 28, 28))
    # a positive angle turns the picture clockwise as numpy prints it (x down, y right)
    np.testing.assert_allclose(R.rotate(img, np.array([np.pi / 2]))[0], np.rot90(img[0], -1),
                               atol=1e-5)
    np.testing.assert_allclose(R.rotate(img, np.array([0.0]))[0], img[0], atol=1e-6)
    assert not np.allclose(R.rotate(img, np.array([0.3]))[0], img[0], atol=1e-2)  # control


def test_rotmnist_train_evaluate_from_idx_files(torch1, tmp_path):
    d = _mnist_dir(tmp_path, 40, 20)
    run, ev = tmp_path / "run", tmp_path / "ev"
    common = ["--mnist-dir", str(d), "--no-progress", "--threads", "1"]
    assert main(["train", "rotmnist", "--out", str(run), "--group", "SO2", "--k", "8",
                 "--num-layers", "1", "--n-train", "20", "--n-val", "10", "--n-test", "10",
                 "--epochs", "1", "--batch-size", "10", "--upright", *common]) == 0
    assert json.loads((run / "config.json").read_text())["info"]["upright"] is True
    assert main(["evaluate", "rotmnist", "--checkpoint", str(run), "--out", str(ev),
                 "--n-test", "10", "--batch-size", "5", *common]) == 0
    m = json.loads((ev / "metrics.json").read_text())
    assert m["n"] == 10 and 0 <= m["accuracy"] <= 1
    assert (ev / "rotations.png").stat().st_size > 1000
    assert (run / "curves.png").is_file()
    eq = tmp_path / "eq"
    assert main(["equivariance", "rotmnist", "--checkpoint", str(run), "--group", "SO2",
                 "--n-test", "10", "--batch-size", "5", "--out", str(eq), *common]) == 0
    (row,) = json.loads((eq / "metrics.json").read_text())["equivariance"]
    # an SO(2) model: rotating its test digits' points changes nothing but rounding
    assert row["moved_by"] == "SO2" and abs(row["original"] - row["transformed"]) <= 0.1


# --- QM9 -----------------------------------------------------------------------------------------
def _cormorant(path, n=6, seed=0):
    gen = np.random.default_rng(seed)
    charges = np.zeros((n, 5), np.int64)
    charges[:, :3] = [6, 1, 1]
    arrays = {"num_atoms": np.full(n, 3), "charges": charges,
              "positions": gen.standard_normal((n, 5, 3))}
    for name in Q.TARGETS:
        arrays[name] = gen.standard_normal(n)
    arrays["U0_thermo"] = np.full(n, -38.0)
    np.savez(path, **arrays)
    return arrays


def test_cormorant_files_convert_units_and_subtract_thermo(tmp_path):
    raw = _cormorant(tmp_path / "train.npz")
    ds = Q.load_cormorant(tmp_path / "train.npz")
    assert ds["charges"].shape == (6, 29) and ds["positions"].shape == (6, 29, 3)
    np.testing.assert_allclose(ds["homo"], raw["homo"] * Q.HARTREE_EV)
    np.testing.assert_allclose(ds["U0"], (raw["U0"] + 38.0) * Q.HARTREE_EV)
    np.testing.assert_allclose(ds["zpve"], raw["zpve"] * Q.HARTREE_EV * 1000)
    np.testing.assert_allclose(ds["mu"], raw["mu"])
    batch = get_task("qm9").inputs(ds.take(slice(0, 2)), {"target": "homo"})
    assert batch["values"].shape == (2, 29, 15) and batch["mask"].sum(1).tolist() == [3, 3]
    np.testing.assert_allclose(batch["targets"][:, 0], ds["homo"][:2])


def test_qm9pack_tables_parse_with_atom_references(tmp_path, monkeypatch):
    cols = ["XYZ_file", "Elements", "XYZ_Ang", *Q.QM9PACK_COLUMNS.values()]
    row = {c: "1.5" for c in Q.QM9PACK_COLUMNS.values()}
    row.update(XYZ_file="m1", Elements="['C','H','H','H','H']",
               XYZ_Ang="[[0.,0.,0.],[1.,0.,0.],[0.,1.,0.],[0.,0.,1.],[-1.,0.,0.]]")
    path = tmp_path / "qm9_part1.csv"
    import csv

    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, cols)
        w.writeheader()
        for _ in range(5):
            w.writerow(row)
    monkeypatch.setattr(Q, "qm9pack_dir", lambda: tmp_path)
    data = Q.load_qm9pack(cache_dir=tmp_path / "cache", sizes={"train": 3, "val": 1, "test": 1})
    tr = data["train"]
    assert tr["charges"][0, :5].tolist() == [6, 1, 1, 1, 1]
    want = (1.5 - (Q.ATOM_REF["U0"][1] + 4 * Q.ATOM_REF["U0"][0])) * Q.HARTREE_EV
    np.testing.assert_allclose(tr["U0"], want)
    np.testing.assert_allclose(tr["homo"], 1.5 * Q.HARTREE_EV)
    assert list((tmp_path / "cache").glob("*.npz"))  # parsed once, then cached
    row["Elements"] = "['C','Xe']"
    with open(path, "a", newline="") as f:
        csv.DictWriter(f, cols).writerow(row)
    with pytest.raises(DataError, match="line 7: malformed row"):
        Q.read_qm9pack_csv([path])


def test_qm9_bad_inputs(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown QM9 target 'spin'"):
        get_task("qm9").model_config("spin")
    _cormorant(tmp_path / "train.npz")
    ds = Q.load_cormorant(tmp_path / "train.npz")
    ds.arrays["charges"][0, 0] = 17
    cfg = get_task("qm9").model_config("homo", k=8, num_layers=1)
    with pytest.raises(DataError, match="holds 17"):
        get_task("qm9").check(ds, cfg)
    np.savez(tmp_path / "bad.npz", charges=np.ones((3, 2)), positions=np.zeros((4, 2, 3)))
    with pytest.raises(DataError, match="disagree in length"):
        Q.load_cormorant(tmp_path / "bad.npz")


def test_qm9_train_on_cormorant_files(torch1, tmp_path):
    for split, seed in (("train", 0), ("valid", 1), ("test", 2)):
        _cormorant(tmp_path / f"{split}.npz", n=8, seed=seed)
    run = tmp_path / "run"
    assert main(["train", "qm9", "--data-dir", str(tmp_path), "--target", "homo", "--k", "8",
                 "--num-layers", "1", "--epochs", "1", "--batch-size", "4", "--out", str(run),
                 "--no-progress", "--threads", "1"]) == 0
    cfg = json.loads((run / "config.json").read_text())["model"]
    assert cfg["group"] == "T3" and len(cfg["target_mean"]) == 1


# --- schedule and eval mode ----------------------------------------------------------------------
@pytest.mark.parametrize("warmup", [0, 3])
def test_torch_and_jax_follow_the_same_schedule(warmup, jax64):
    from lieconv_jax.train import make_optimizer

    total, lr = 20, 0.01
    opt = make_optimizer(lr, total, warmup)
    sched = opt.init({"w": jax64.numpy.zeros(1)})
    del sched
    import optax

    ref = (optax.warmup_cosine_decay_schedule(0.0, lr, warmup, total) if warmup
           else optax.cosine_decay_schedule(lr, total))
    got = [lr_at(lr, s, total, warmup) for s in range(total + 2)]
    np.testing.assert_allclose(got, [float(ref(s)) for s in range(total + 2)], rtol=1e-12,
                               atol=1e-15)
    assert got[0] == (0.0 if warmup else lr) and got[-1] == 0.0


def _grid_digits(n, seed):
    """8×8 pixel images of a 2×2 block (label 0) or a 1×4 bar (label 1) at random places,
    as clouds on the pixel grid with intensities as features."""
    gen = np.random.default_rng(seed)
    img = np.zeros((n, 8, 8))
    labels = gen.integers(0, 2, n)
    for i in range(n):
        r, c = gen.integers(1, 5, 2)
        if labels[i] == 0:
            img[i, r:r + 2, c:c + 2] = 1
        elif gen.uniform() < 0.5:
            img[i, r, c - 1:c + 3] = 1
        else:
            img[i, r - 1:r + 3, c] = 1
    axis = np.arange(8) - 3.5
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    coords = np.broadcast_to(grid, (n, 64, 2)).copy()
    return coords, img.reshape(n, 64, 1) + 0.05 * gen.standard_normal((n, 64, 1)), labels


@pytest.mark.parametrize("group", ["T2", "SE2"])
def test_eval_mode_agrees_with_train_mode_on_a_pixel_grid(group, torch1, tmp_path):
    """On a grid the radius controller saw-tooths across shells of equal distances; eval uses
    the running average of the training radius, so train-mode and eval-mode accuracy on the
    training data agree within a few points."""
    from lieconv_core.app.estimators import Classifier
    from lieconv_core.app.training import load_run

    x, v, y = _grid_digits(160, seed=0)
    lr = 1e-2 if group == "T2" else 3e-3
    clf = Classifier(group=group, epochs=12, batch_size=16, lr=lr, progress=False,
                       dtype="float64", k=16, num_layers=2, nbhd=9, fill=0.15, augment=False)
    clf.fit(x, y, values=v, out=tmp_path / group)
    _, _, model, params, state, _ = load_run(tmp_path / group)
    inputs = (x, v, np.ones(x.shape[:2], bool))
    accs = {}
    for train in (True, False):
        out, _ = model.apply(params, state, inputs, train=train, rng=3)
        accs[train] = float(np.mean(out.argmax(-1) == y))
    assert accs[False] >= (0.9 if group == "T2" else 0.6), accs  # chance: 0.5
    assert abs(accs[True] - accs[False]) <= 0.05, accs
    r = [float(b["conv"]["r"]) for b in state["blocks"].values()]
    r_train = [float(b["conv"]["r_train"]) for b in state["blocks"].values()]
    assert r != r_train  # the eval radius is the average, not the last training radius
    assert np.allclose(r, r_train, rtol=0.05)  # ... of radii that have settled


def test_model_config_keeps_the_pair_orientation():
    """A run is rebuilt with the pair orientation it was trained with: the image model swaps
    the pair embedding after odd numbers of subsampling layers unless its config says
    original_pairs false."""
    task = get_task("rotmnist")
    cfg = task.model_config("SO2", k=16, num_layers=3)
    swaps = [b.conv.swap_pairs for b in task.build_model(cfg).blocks]
    assert swaps == [False, True, False]
    plain = task.build_model({**cfg, "original_pairs": False})
    assert not any(b.conv.swap_pairs for b in plain.blocks)


def test_checkpoints_leave_out_the_fps_cache(tmp_path):
    """A jax trainer's state carries the image model's cached FPS indices (shaped by the batch):
    checkpoints leave them out, and a checkpoint that holds them still loads."""
    from lieconv_core.app import io
    from lieconv_core.app.training.engine import load_checkpoint, save_checkpoint
    from lieconv_core.app.training.rundir import RunDir
    from lieconv_core.nn.module import flatten

    task = get_task("rotmnist")
    cfg = task.model_config(group="T2", k=8, num_layers=2)
    model = task.build_model(cfg)
    params, state = model.init(seed=0)
    fps = {"blocks.0.conv.fps_idx": np.zeros((25, 250), np.int64)}

    class Trainer:
        count = 3

        def params_host(self):
            return flatten(params)

        def state_host(self):
            return {**flatten(state), **fps}

    with RunDir.open(tmp_path / "run", "new") as run:
        save_checkpoint(run, "model.safetensors", Trainer())
    flat, _ = io.load_tensors(tmp_path / "run" / "model.safetensors")
    assert not any(k.endswith("fps_idx") for k in flat)
    assert "state.blocks.0.conv.r" in flat  # control: the rest of the state is kept
    # a checkpoint written with the cache (as jax runs once were) loads without it
    old = {**flat, "state.blocks.0.conv.fps_idx": fps["blocks.0.conv.fps_idx"]}
    io.save_tensors(tmp_path / "old.safetensors", old, {"step": 3})
    _, st, _, _ = load_checkpoint(tmp_path / "old.safetensors", model)
    assert "fps_idx" not in st["blocks"]["0"]["conv"]
    np.testing.assert_array_equal(st["blocks"]["0"]["conv"]["r"], state["blocks"]["0"]["conv"]["r"])
