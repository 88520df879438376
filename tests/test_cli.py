"""The ``lieconv`` command line: train / evaluate / errors."""

from __future__ import annotations

import json

import pytest

from lieconv_core.cli import main

TINY = ["--n-train", "16", "--n-val", "4", "--batch-size", "8", "--k", "16", "--num-layers", "1",
        "--threads", "1", "--no-progress"]


@pytest.mark.parametrize("argv,msg", [
    (["train", "springs", "--group", "SE7", "--out", "x"], "unknown group 'SE7'"),
    (["train", "springs", "--backend", "mxnet", "--out", "x"], "unknown backend 'mxnet'"),
    (["train", "springs", "--model", "hogn", "--out", "x"], "unknown model 'hogn'"),
    (["train", "qm9", "--out", "x"], "unknown task 'qm9'"),
    (["evaluate", "springs", "--checkpoint", "nowhere", "--out", "x", "--backend", "tf"],
     "unknown backend 'tf'"),
])
def test_bad_names_give_clear_errors(argv, msg, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("backend,device", [("torch", "cuda:99"), ("torch", "bogus"),
                                            ("jax", "tpu:0"), ("jax", "cpu:7")])
def test_bad_device_is_named_and_nothing_is_written(backend, device, capsys, tmp_path):
    pytest.importorskip(backend)
    out = tmp_path / "x"
    assert main(["train", "springs", "--backend", backend, "--device", device,
                 "--out", str(out)]) == 2
    assert f"--device {device!r}" in capsys.readouterr().err
    assert not out.exists()


def test_evaluate_missing_or_corrupt_checkpoint(capsys, tmp_path):
    assert main(["evaluate", "springs", "--checkpoint", str(tmp_path / "none"),
                 "--out", str(tmp_path / "ev")]) == 2
    assert "does not exist" in capsys.readouterr().err
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"model": {"model": "hfc", "k": 8, "num_layers": 1}, '
                                     '"backend": "torch", "dtype": "float32"}')
    (run / "model.safetensors").write_bytes(b"\x07" * 64)
    argv = ["evaluate", "springs", "--checkpoint", str(run), "--out", str(tmp_path / "ev")]
    assert main(argv) == 2
    assert "corrupt" in capsys.readouterr().err


def test_train_evaluate_and_resume(torch1, tmp_path, capsys):
    out, ev = tmp_path / "run", tmp_path / "eval"
    argv = ["train", "springs", "--backend", "torch", "--model", "hlieconv", "--group", "T2",
            "--epochs", "1", "--seed", "0", "--out", str(out), "--dtype", "float64",
            "--device", "cpu", *TINY]
    assert main(argv) == 0
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors",
                                               "last.safetensors", "history.json"}
    assert main(argv) == 2  # refuses to overwrite
    assert "already holds a run" in capsys.readouterr().err
    assert main([*argv[:argv.index("--epochs") + 1], "2", *argv[argv.index("--epochs") + 2:],
                 "--resume"]) == 0
    assert json.loads((out / "history.json").read_text())["epoch"] == 2
    capsys.readouterr()
    ev_argv = ["evaluate", "springs", "--checkpoint", str(out), "--out", str(ev), "--n-test", "8",
               "--n-rollout", "2", "--rollout-steps", "30", "--threads", "1"]
    assert main(ev_argv) == 0
    metrics = json.loads((ev / "metrics.json").read_text())
    for key in ("test_mse", "rollout_mse", "energy_rel_drift", "linear_momentum_rel_drift",
                "angular_momentum_rel_drift"):
        assert isinstance(metrics[key], float), key
    assert metrics["linear_momentum_rel_drift"] < 1e-12  # HLieConv-T2 in float64
    assert (ev / "trajectories.png").stat().st_size > 1000
    assert (ev / "conservation.png").stat().st_size > 1000
    assert main(ev_argv) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
