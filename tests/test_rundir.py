"""Run folders a user can trust: nothing overwritten that the run does not own, atomic
checkpoints that resume consistently, one writer at a time, checked configs and weights, and a
sentence instead of a traceback for every bad value."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _clouds import shapes, write_npz  # noqa: E402

from lieconv_core.app import io  # noqa: E402
from lieconv_core.app.cli import main  # noqa: E402
from lieconv_core.app.training import load_run  # noqa: E402
from lieconv_core.app.training.rundir import RunDir, RunDirError, atomic_write  # noqa: E402

TINY = ["--kind", "classify", "--group", "T2", "--k", "8", "--num-layers", "1", "--nbhd", "8",
        "--batch-size", "8", "--no-progress", "--threads", "1"]


@pytest.fixture
def data(tmp_path):
    x, y = shapes(48, n_points=8, seed=0)
    return write_npz(tmp_path / "train.npz", x, labels=y)


def _train(data, out, *extra):
    return main(["train", "pointcloud", "--data", data, "--out", str(out), *TINY, *extra])


def test_foreign_files_are_refused_and_overwrite_keeps_them(torch1, data, tmp_path, capsys):
    out = tmp_path / "d"
    out.mkdir()
    (out / "model.safetensors").write_text("MINE")
    (out / "notes.txt").write_text("keep me")
    assert _train(data, out, "--epochs", "1") == 2
    assert "holds files that are not a lieconv run" in capsys.readouterr().err
    assert (out / "model.safetensors").read_text() == "MINE"
    assert _train(data, out, "--epochs", "1", "--overwrite") == 0
    assert (out / "notes.txt").read_text() == "keep me"  # not the run's file: untouched
    assert (out / "model.safetensors").read_bytes()[:8] != b"MINE"  # the run's own: replaced


def test_outputs_never_follow_symlinks(torch1, data, tmp_path, capsys):
    run, ev = tmp_path / "run", tmp_path / "ev"
    assert _train(data, run, "--epochs", "1") == 0
    ev.mkdir()
    outside = tmp_path / "outside.png"
    outside.write_text("precious")
    (ev / "confusion.png").symlink_to(outside)
    argv = ["evaluate", "pointcloud", "--checkpoint", str(run), "--data", data, "--out", str(ev),
            "--no-progress"]
    assert main([*argv, "--overwrite"]) == 2
    assert "symbolic link" in capsys.readouterr().err
    assert outside.read_text() == "precious"
    (ev / "confusion.png").unlink()
    (ev / "confusion.png").symlink_to(tmp_path / "dangling.png")
    assert main([*argv, "--overwrite"]) == 2
    assert not (tmp_path / "dangling.png").exists()
    (ev / "confusion.png").unlink()
    (ev / "confusion.png").write_text("old plot")
    assert main(argv) == 2  # an existing output without --overwrite
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (ev / "confusion.png").read_text() == "old plot"
    (ev / "link").symlink_to(outside)
    with pytest.raises(RunDirError, match="symbolic link"):
        atomic_write(ev / "link", lambda p: None)
    (run / "config.json").rename(run / "config.real")
    (run / "config.json").symlink_to(run / "config.real")
    with pytest.raises(io.CheckpointError, match="symbolic link"):
        load_run(run)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lieconv_core.app.cli", *args]


def test_killed_training_resumes_on_the_same_trajectory(torch1, data, tmp_path):
    """A real SIGKILL while training writes checkpoints every step; --resume continues from
    the last complete checkpoint and ends with the losses of an uninterrupted run. An orphaned
    temporary file is removed when the folder is opened again."""
    base = ["train", "pointcloud", "--data", data, *TINY, "--epochs", "4", "--eval-every", "1",
            "--dtype", "float64"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main([*base, "--out", str(full)]) == 0
    proc = subprocess.Popen(_cli(*base, "--out", str(cut)), stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:  # the second checkpoint: training is under way
        hist = cut / "history.json"
        if hist.exists() and len(json.loads(hist.read_text() or "{}").get("evals", [])) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    (cut / ".lieconv-last.safetensors.x.tmp").write_bytes(b"half a file")
    assert main([*base, "--out", str(cut), "--resume"]) == 0
    assert not list(cut.glob("*.tmp")) and not list(cut.glob(".*.tmp"))
    want = json.loads((full / "history.json").read_text())["step_loss"]
    got = json.loads((cut / "history.json").read_text())["step_loss"]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_a_second_writer_is_refused_with_the_holders_pid(torch1, data, tmp_path, capsys):
    out = tmp_path / "busy"
    proc = subprocess.Popen(_cli("train", "pointcloud", "--data", data, *TINY, "--epochs",
                                 "500", "--out", str(out)), stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out / "config.json").exists():
            time.sleep(0.05)
        assert _train(data, out, "--epochs", "1", "--overwrite") == 2
        assert f"in use by another lieconv process (pid {proc.pid})" in capsys.readouterr().err
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert _train(data, out, "--epochs", "1", "--overwrite") == 0  # the lock went with it


def _default_sigint() -> None:
    """In the child: SIGINT's default disposition, so that Python turns it into
    KeyboardInterrupt even when the test runs as a background job (whose shell ignores it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_sigint_says_where_the_checkpoint_is(torch1, data, tmp_path):
    out = tmp_path / "int"
    proc = subprocess.Popen(_cli("train", "pointcloud", "--data", data, *TINY, "--epochs",
                                 "500", "--eval-every", "1", "--out", str(out)),
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "last.safetensors").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert "continue with the same command and --resume" in err and "last.safetensors" in err


def test_config_is_checked_before_anything_is_built(torch1, data, tmp_path):
    run = tmp_path / "run"
    assert _train(data, run, "--epochs", "1") == 0
    cfg = json.loads((run / "config.json").read_text())
    for key, val, msg in (("k", 200000, "k must be an integer in"),
                          ("num_layers", 1000000, "num_layers must be an integer in"),
                          ("k", "64", "k must be an integer"),
                          ("k", 4096, "k 4096 \\(the weights have 8\\)"),
                          ("num_layers", 60, "num_layers 60 \\(the weights have 1\\)")):
        bad = json.loads(json.dumps(cfg))
        bad["model"][key] = val
        (run / "config.json").write_text(json.dumps(bad))
        t0 = time.perf_counter()
        with pytest.raises(io.CheckpointError, match=msg):
            load_run(run)
        assert time.perf_counter() - t0 < 30  # no allocation for minutes
    (run / "config.json").write_text("[1, 2]")
    with pytest.raises(io.CheckpointError, match="no model config"):
        load_run(run)


@pytest.mark.parametrize("flag,value", [("--batch-size", "-5"), ("--batch-size", "0"),
                                        ("--epochs", "0"), ("--epochs", "-3"),
                                        ("--max-steps", "-1"), ("--patience", "-1"),
                                        ("--lr", "0"), ("--lr", "nan")])
def test_numeric_flags_are_range_checked(flag, value, data, tmp_path, capsys):
    assert _train(data, tmp_path / "r", flag, value) == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flag", ["--n-rollout", "--rollout-steps", "--substeps"])
def test_evaluate_flags_are_range_checked(flag, tmp_path, capsys):
    assert main(["evaluate", "springs", "--checkpoint", "x", "--out", str(tmp_path / "e"),
                 flag, "0"]) == 2
    assert f"argument {flag}" in capsys.readouterr().err


def test_out_under_a_file_or_read_only_folder(data, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert _train(data, tmp_path / "file" / "run") == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    if os.geteuid() == 0:
        return  # root writes into read-only folders
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    assert _train(data, ro / "run") == 2
    assert "cannot create" in capsys.readouterr().err


def test_resume_refuses_different_settings_and_records_more_epochs(torch1, data, tmp_path,
                                                                    capsys):
    run = tmp_path / "run"
    assert _train(data, run, "--epochs", "1") == 0
    assert _train(data, run, "--epochs", "1", "--resume", "--batch-size", "4") == 2
    assert "batch_size 8 -> 4" in capsys.readouterr().err
    assert _train(data, run, "--epochs", "1", "--resume", "--lr", "0.5") == 2
    assert "lr 0.01 -> 0.5" in capsys.readouterr().err
    assert _train(data, run, "--epochs", "2", "--resume") == 0
    hist = json.loads((run / "history.json").read_text())
    assert hist["epoch"] == 2 and "epochs 1 -> 2" in hist["changes"][0]
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 2


def test_resume_checks_the_checkpoint(torch1, data, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(data, run, "--epochs", "1") == 0
    flat, meta = io.load_tensors(run / "last.safetensors")
    hist = json.loads(meta["history"])
    del hist["evals"]
    io.save_tensors(run / "last.safetensors", flat, {**meta, "history": json.dumps(hist)})
    assert _train(data, run, "--epochs", "2", "--resume") == 2
    assert "no complete training history" in capsys.readouterr().err
    bad = {k: v for k, v in flat.items() if not k.startswith("opt.mu.")}
    io.save_tensors(run / "last.safetensors", bad, meta)
    assert _train(data, run, "--epochs", "2", "--resume") == 2
    assert "optimizer" in capsys.readouterr().err


def test_flipped_bytes_in_a_checkpoint_are_found(torch1, data, tmp_path):
    run = tmp_path / "run"
    assert _train(data, run, "--epochs", "1") == 0
    raw = bytearray((run / "model.safetensors").read_bytes())
    raw[-3] ^= 0x10  # inside the tensor data, after the header
    (run / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(io.CheckpointError, match="corrupt"):
        load_run(run)


def test_rundir_owns_only_its_files(tmp_path):
    out = tmp_path / "o"
    with RunDir.open(out, "output") as run:
        run.write_json("metrics.json", {"a": 1})
        assert run.entries() == ["metrics.json"]
    mask = os.umask(0o022)
    os.umask(mask)
    assert (out / "metrics.json").stat().st_mode & 0o777 == 0o666 & ~mask  # as open() makes
    with pytest.raises(FileExistsError, match="already holds metrics.json"):
        RunDir.open(out, "output")
    with RunDir.open(out, "output", overwrite=True) as run:
        with pytest.raises(ValueError, match="not a file name"):
            run.file("../escape")
