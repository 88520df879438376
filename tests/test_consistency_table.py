"""The cross-backend consistency table (lieconv_core.tools.consistency) runs and passes, quickly."""

import pytest

from lieconv_core.tools import consistency

QUICK = ["exp SE3", "log SO3", "lift SE2", "fps T3", "nbhd knn", "LieConv T3", "LieResNet T3 eval",
         "nbhd ball T3 chunks"]  # several query chunks, the last one shorter
# one cold run per cell (repeats=0): the table is checked, not timed


def _specs():
    specs = ["numpy", "array_api_strict"]
    for name, spec in (("torch", "torch:cpu"), ("jax", "jax:cpu")):
        try:
            __import__(name)
        except ImportError:
            continue
        specs.append(spec)
    return specs


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_table_within_tolerance(dtype):
    pytest.importorskip("array_api_strict")
    specs = _specs()
    rows = consistency.run(specs, dtypes=(dtype,), only=QUICK, repeats=0)
    table = consistency.format_table(rows)
    assert {r.spec for r in rows} == set(specs), table
    assert len(rows) == len(specs) * len({r.function for r in rows}), table
    bad = [r for r in rows if not r.ok]
    assert not bad, table


def test_deviation_detects_differences():
    import numpy as np

    ref = np.array([1.0, 2.0, 4.0])
    assert consistency.deviation(ref, ref, False) == 0
    assert consistency.deviation(ref + 1e-3, ref, False) == pytest.approx(1e-3 / 4)
    assert consistency.deviation(np.array([1, 2]), np.array([1, 3]), True) == 0.5
    assert consistency.deviation(ref[:2], ref, False) == float("inf")


def test_main_exit_status_and_table(capsys):
    assert consistency.main(["--backends", "numpy,array_api_strict", "--dtypes", "float64",
                             "--only", "exp SO2", "--repeats", "0"]) == 0
    out = capsys.readouterr().out
    assert "exp SO2" in out and "array_api_strict" in out and "within tolerance" in out


def _cupy_usable() -> bool:
    try:
        import cupy

        return bool(cupy.is_available())
    except Exception:  # not installed, or a broken CUDA install
        return False


def test_unavailable_spec_is_notimplemented():
    """An unknown spec is a ValueError; cupy without a usable GPU is NotImplementedError (what asv
    needs to skip a benchmark), and with one it resolves."""
    with pytest.raises(ValueError):
        consistency.resolve("tpu")
    if _cupy_usable():
        assert consistency.resolve("cupy") is not None
    else:
        with pytest.raises(NotImplementedError):
            consistency.resolve("cupy")


def test_interrupted_run_prints_the_rows_done(monkeypatch, capsys):
    """A run stopped by SIGTERM (``timeout`` on the GPU check) or Ctrl-C prints the table of the
    checks done so far and exits 130, instead of losing them (the H200 run of 2026-11-30 was cut
    at 51 of 54 checks and printed nothing)."""
    import os
    import signal

    real = consistency._timed
    calls = []

    def timed(fn, b, dtype, repeats):
        calls.append(dtype)
        if len(calls) == 3:  # the third cell: as if `timeout` stopped the process here
            os.kill(os.getpid(), signal.SIGTERM)
        return real(fn, b, dtype, repeats)

    monkeypatch.setattr(consistency, "_timed", timed)
    before = signal.getsignal(signal.SIGTERM)
    rc = consistency.main(["--backends", "numpy", "--only", "exp SE3,log SO3", "--repeats", "0",
                           "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 130
    assert signal.getsignal(signal.SIGTERM) is before  # handler restored
    assert "INTERRUPTED after 2 (check, dtype) pairs" in out
    lines = [ln for ln in out.splitlines() if ln.startswith(("exp SE3", "log SO3"))]
    # the first check's two dtypes are done (the third cell stopped the run before its row)
    assert [ln.split()[2] for ln in lines] == ["float64", "float32"]
    assert len({tuple(ln.split()[:2]) for ln in lines}) == 1
    assert "2/2 within tolerance" in out
