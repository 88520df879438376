"""Portable weights: atomic safetensors + config, cross-backend loading, clear errors, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lieconv_core.app import io
from lieconv_core.app.training import RunDirError
from lieconv_core.data import springs as S
from lieconv_core.dynamics import make_model
from lieconv_core.nn.module import flatten
from lieconv_core.tasks import Dataset


@pytest.fixture(scope="module")
def splits():
    return S.make_splits(n_train=16, n_val=4, n_test=4, seed=0)


def _write_run(tmp_path, model, params_flat, dtype="float64"):
    io.save_json(tmp_path / io.CONFIG, {"model": model.config(), "dtype": dtype})
    io.save_weights(tmp_path, params_flat)


def test_roundtrip_is_exact_and_atomic(tmp_path):
    model = make_model("hlieconv", k=16, num_layers=1)
    flat = flatten(model.init_host(np.random.default_rng(0)))
    _write_run(tmp_path, model, flat)
    assert sorted(p.name for p in tmp_path.iterdir()) == [io.CONFIG, io.WEIGHTS]  # no temp files
    m2, params, cfg = io.load_model(tmp_path, backend="numpy")
    assert m2.config() == model.config() and cfg["dtype"] == "float64"
    for k, v in flatten(params).items():
        np.testing.assert_array_equal(np.asarray(v), flat[k])


def test_corrupt_and_truncated_checkpoints(tmp_path):
    model = make_model("hfc", k=8, num_layers=1)
    _write_run(tmp_path, model, flatten(model.init_host(np.random.default_rng(0))))
    data = (tmp_path / io.WEIGHTS).read_bytes()
    (tmp_path / io.WEIGHTS).write_bytes(data[: len(data) // 2])
    with pytest.raises(io.CheckpointError, match="corrupt or truncated"):
        io.load_model(tmp_path)
    (tmp_path / io.WEIGHTS).write_bytes(b"\x00garbage" * 10)
    with pytest.raises(io.CheckpointError, match="not a valid safetensors"):
        io.load_model(tmp_path)
    (tmp_path / io.WEIGHTS).unlink()
    with pytest.raises(io.CheckpointError, match="does not exist"):
        io.load_model(tmp_path)
    (tmp_path / io.CONFIG).write_text("{not json")
    with pytest.raises(io.CheckpointError, match="not valid JSON"):
        io.load_model(tmp_path)
    with pytest.raises(io.CheckpointError, match="does not exist"):
        io.load_model(tmp_path / "nowhere")


def test_foreign_safetensors_and_nan_weights(tmp_path):
    from safetensors.numpy import save_file

    model = make_model("hfc", k=8, num_layers=1)
    flat = flatten(model.init_host(np.random.default_rng(0)))
    io.save_json(tmp_path / io.CONFIG, {"model": model.config(), "dtype": "float64"})
    save_file({k: np.ascontiguousarray(v) for k, v in flat.items()}, str(tmp_path / io.WEIGHTS))
    with pytest.raises(io.CheckpointError, match="not a lieconv checkpoint"):
        io.load_model(tmp_path)
    bad = dict(flat)
    bad["mlp.0.w"] = bad["mlp.0.w"].copy()
    bad["mlp.0.w"][0, 0] = np.nan
    io.save_weights(tmp_path, bad)
    with pytest.raises(io.CheckpointError, match="NaN"):
        io.load_model(tmp_path)


def test_config_that_does_not_fit_the_weights(tmp_path):
    small = make_model("hlieconv", k=16, num_layers=1)
    _write_run(tmp_path, small, flatten(small.init_host(np.random.default_rng(0))))
    cfg = io.load_json(tmp_path / io.CONFIG)
    cfg["model"]["k"] = 32
    (tmp_path / io.CONFIG).write_text(json.dumps(cfg))
    with pytest.raises(io.CheckpointError, match="k 32 \\(the weights have 16\\)"):
        io.load_model(tmp_path)
    cfg["model"]["k"] = 16
    cfg["model"]["num_layers"] = 2
    (tmp_path / io.CONFIG).write_text(json.dumps(cfg))
    with pytest.raises(io.CheckpointError, match="num_layers 2 \\(the weights have 1\\)"):
        io.load_model(tmp_path)
    cfg["model"]["num_layers"] = 1
    cfg["model"]["model"] = "hogn"
    (tmp_path / io.CONFIG).write_text(json.dumps(cfg))
    with pytest.raises(io.CheckpointError, match="unknown model"):
        io.load_model(tmp_path)


def _fit(model, splits, out, **kw):
    from lieconv_core.app.training import fit
    from lieconv_core.tasks import get_task

    task = get_task("springs")
    cfg = {**model.config(), "ts": [float(t) for t in splits["train"].ts]}
    data = {k: Dataset({"z": v.z, "sys": v.sys}, f"springs {k}") for k, v in splits.items()}
    kw.setdefault("progress", False)
    return fit(task, cfg, data, out, **kw)


def test_never_overwrites_silently(tmp_path, splits, torch1):
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(FileExistsError):
        io.ensure_writable(tmp_path / "x.json")
    io.ensure_writable(tmp_path / "x.json", overwrite=True)
    model = make_model("hfc", k=8, num_layers=1)
    _fit(model, splits, tmp_path / "run", epochs=1, batch_size=8)
    with pytest.raises(FileExistsError, match="already holds a run"):
        _fit(model, splits, tmp_path / "run", epochs=1, batch_size=8)


def test_trained_on_torch_loaded_in_numpy_gives_the_same_potential(tmp_path, splits, torch1):
    model = make_model("hlieconv", k=16, num_layers=1)
    hist = _fit(model, splits, tmp_path, epochs=2, batch_size=8, lr=1e-2, dtype="float32")
    trainer = hist["trainer"]
    # the best-val weights are in model.safetensors; compare against them on torch
    m_np, p_np, _ = io.load_model(tmp_path, backend="numpy")
    m_t, p_t, _ = io.load_model(tmp_path, backend="torch")
    q, sys = splits["test"].z[:, 0, 0], splits["test"].sys
    v_np = m_np.potential(p_np, q.astype(np.float32), sys.astype(np.float32))
    v_t = m_t.potential(p_t, torch1.tensor(q, dtype=torch1.float32),
                        torch1.tensor(sys, dtype=torch1.float32)).detach().numpy()
    assert v_np.dtype == np.float32
    np.testing.assert_allclose(v_np, v_t, rtol=1e-6, atol=1e-6)
    h_np = m_np.energy(p_np, splits["test"].z[:, 0].astype(np.float32), sys.astype(np.float32))
    assert h_np.shape == (4,) and np.all(np.isfinite(h_np))
    assert trainer.count == 4


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_resume_continues_the_same_loss_trajectory(tmp_path, splits, torch1, optimizer):
    model = make_model("hlieconv", k=16, num_layers=1)
    kw = dict(epochs=3, batch_size=8, lr=1e-2, dtype="float64", optimizer=optimizer)
    full = _fit(model, splits, tmp_path / "full", **kw)
    part = _fit(model, splits, tmp_path / "part", max_steps=3, **kw)
    assert len(part["step_loss"]) == 3  # stopped inside the second epoch
    resumed = _fit(model, splits, tmp_path / "part", resume=True, **kw)
    assert resumed["epoch"] == 3
    np.testing.assert_allclose(resumed["step_loss"], full["step_loss"], rtol=1e-12)
    val = [e["val"]["mse"] for e in resumed["evals"]]
    np.testing.assert_allclose(val, [e["val"]["mse"] for e in full["evals"]], rtol=1e-12)
    with pytest.raises(RunDirError, match="nothing to resume"):
        _fit(model, splits, tmp_path / "empty", resume=True, **kw)


def test_nan_training_data_is_rejected(tmp_path, splits):
    bad = dict(splits)
    tr = splits["train"]
    z = tr.z.copy()
    z[0, 0, 0, 0, 0] = np.nan
    bad["train"] = S.Split(z, tr.sys, tr.ts, tr.start)
    with pytest.raises(ValueError, match="springs train.*'z' holds NaN"):
        _fit(make_model("fc", k=8, num_layers=1), bad, tmp_path, epochs=1)
    with pytest.raises(ValueError, match="unknown training backend"):
        _fit(make_model("fc", k=8, num_layers=1), splits, tmp_path, epochs=1, backend="numpy")


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_optimizer_state_is_portable_between_torch_and_jax(splits, torch1, optimizer):
    """Optimizer state from the torch trainer, continued on jax: the same losses as on torch
    (Adam's moments and step count; plain SGD's step count alone)."""
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    from lieconv_core.app.springs import trainer
    from lieconv_core.nn.module import unflatten

    model = make_model("hfc", k=8, num_layers=2)
    tr = splits["train"]
    batches = [{"z": tr.z[i:i + 8], "sys": tr.sys[i:i + 8]} for i in (0, 8, 0, 8)]
    kw = dict(lr=1e-2, total_steps=10, dtype="float64", optimizer=optimizer)
    a = trainer("torch", model, model.init_host(np.random.default_rng(0)), tr.ts, **kw)
    for b in batches[:2]:
        a.step(b)
    params, opt = unflatten(a.params_host()), a.opt_state_host()
    assert (len(opt) == 1) == (optimizer == "sgd") and int(opt["opt.count"]) == 2
    b = trainer("jax", model, params, tr.ts, opt_state=opt, **kw)
    assert b.count == 2
    la = [a.step(x) for x in batches[2:]]
    lb = [b.step(x) for x in batches[2:]]
    np.testing.assert_allclose(la, lb, rtol=1e-10)
    c = trainer("torch", model, unflatten(b.params_host()), tr.ts,
                opt_state=b.opt_state_host(), **kw)
    d = trainer("jax", model, unflatten(b.params_host()), tr.ts,
                opt_state=b.opt_state_host(), **kw)
    np.testing.assert_allclose(c.step(batches[0]), d.step(batches[0]), rtol=1e-10)
