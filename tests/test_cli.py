"""The ``lieconv`` command line: train / evaluate / errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lieconv_core.app.cli import main

TINY = ["--n-train", "16", "--n-val", "4", "--batch-size", "8", "--k", "16", "--num-layers", "1",
        "--threads", "1", "--no-progress"]


@pytest.mark.parametrize("argv,msg", [
    (["train", "springs", "--group", "SE7", "--out", "x"], "unknown group 'SE7'"),
    (["train", "springs", "--backend", "mxnet", "--out", "x"], "unknown backend 'mxnet'"),
    (["train", "springs", "--model", "hogn", "--out", "x"], "unknown model 'hogn'"),
    (["train", "hogwarts", "--out", "x"], "unknown task 'hogwarts'"),
    (["train", "qm9", "--target", "spin", "--out", "x"], "unknown QM9 target 'spin'"),
    (["train", "springs", "--backend", "jax", "--compile", "--out", "x"],
     "--compile is for the torch backend"),
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
    assert "epochs 1 -> 2" in " ".join(json.loads((out / "history.json").read_text())["changes"])
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
    # finer integration of the same rollout: close to, but not the same as, one step per grid step
    ev2 = tmp_path / "eval2"
    bad = [*ev_argv[:ev_argv.index("--out") + 1], str(ev2), *ev_argv[ev_argv.index("--out") + 2:]]
    assert main([*bad, "--substeps", "0"]) == 2
    assert "--substeps" in capsys.readouterr().err
    assert not ev2.exists()
    assert main([*bad, "--substeps", "3"]) == 0
    fine = json.loads((ev2 / "metrics.json").read_text())
    assert fine["substeps"] == 3 and metrics["substeps"] == 1
    # the rollouts on the data grid: the same start, then RK4 with a third of the step differs
    # from RK4 with the full step by the integrator's error (this 2-epoch model's forces are
    # strong, so compare the first step, before its trajectories run away)
    from lieconv_core.app import springs as springs_app
    from lieconv_core.app.training import load_run, runner_for

    task, cfg, model, params, state, config = load_run(out)
    runner = runner_for("torch", task, model, cfg, params, state, "float64")
    config = {**config, "eval_backend": "torch"}
    kw = dict(n_test=8, n_rollout=2, rollout_steps=5, progress=False)
    one, three = (springs_app.evaluate_run(task, cfg, model, runner, config, substeps=n,
                                           **kw)[1]["pred"]
                  for n in (1, 3))
    assert np.array_equal(one[:, 0], three[:, 0])
    step1 = np.abs(one[:, 1] - three[:, 1]).max()
    assert 0 < step1 < 1e-6 * np.abs(one[:, 1]).max()


def test_train_compile_reaches_the_torch_trainer(torch1, tmp_path, capsys, monkeypatch):
    """``--compile`` builds TorchTrainer(compile=True) (stopped there: compiling takes minutes);
    without it the trainer gets no compile argument (its default, eager)."""
    from lieconv_torch.train import TorchTrainer

    seen = []

    def record(self, *args, **kw):
        seen.append(kw.get("compile", False))
        raise RuntimeError("stopped by the test")

    monkeypatch.setattr(TorchTrainer, "__init__", record)
    for flag, out in ((["--compile"], "c"), ([], "e")):
        argv = ["train", "springs", "--backend", "torch", *flag, *TINY, "--out",
                str(tmp_path / out)]
        assert main(argv) == 2
        assert "stopped by the test" in capsys.readouterr().err
    assert seen == [True, False]
