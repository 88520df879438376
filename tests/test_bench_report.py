"""asv_bench/report.py: cross-backend tables from saved asv results (asv's results layout)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("bench_report", ROOT / "asv_bench" / "report.py")
report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report)

COLUMNS = ["result", "params", "version", "started_at", "duration"]


def write_results(root: Path) -> None:
    """Two machines; one with an older and a newer run. Values are arbitrary test numbers."""
    (root / "benchmarks.json").write_text(json.dumps({
        "groups.Exp.time_exp": {"param_names": ["backend", "n"], "type": "time",
                                "unit": "seconds"},
        "layer.Layer.peakmem": {"param_names": ["backend"], "type": "peakmemory",
                                "unit": "bytes"},
        "layer.Plain.time_x": {"param_names": [], "type": "time", "unit": "seconds"},
    }))
    a = root / "cpu-box"
    a.mkdir()
    (a / "machine.json").write_text(json.dumps({"machine": "cpu-box", "cpu": "Some CPU",
                                                "num_cpu": "2"}))
    old = {"commit_hash": "aaaaaaaa11", "date": 1000, "result_columns": COLUMNS, "results": {
        "groups.Exp.time_exp": [[9.0, 9.0, 9.0, 9.0],
                                [["'numpy'", "'torch:cpu'"], ["10", "1000"]]]}}
    new = {"commit_hash": "bbbbbbbb22", "date": 2000, "result_columns": COLUMNS, "results": {
        # order: (numpy, 10), (numpy, 1000), (torch:cpu, 10), (torch:cpu, 1000)
        "groups.Exp.time_exp": [[0.002, 0.5, 0.001, None],
                                [["'numpy'", "'torch:cpu'"], ["10", "1000"]]],
        "layer.Layer.peakmem": [[100.0, 200.0], [["'numpy'", "'torch:cpu'"]]],
        "layer.Plain.time_x": [1.0, []]}}
    (a / "aaaaaaaa-existing.json").write_text(json.dumps(old))
    (a / "bbbbbbbb-existing.json").write_text(json.dumps(new))
    b = root / "gpu-box"
    b.mkdir()
    (b / "cccccccc-existing.json").write_text(json.dumps({
        "commit_hash": "cccccccc33", "date": 3000, "result_columns": COLUMNS, "results": {
            "groups.Exp.time_exp": [[4e-5, 1e-5], [["'torch:cuda'", "'cupy'"], ["10"]]]}}))


def test_report_tables(tmp_path):
    write_results(tmp_path)
    text = report.report(tmp_path)
    cpu, gpu = text.split("### cpu-box")[1].split("### gpu-box")
    # the newer run of cpu-box, backends as columns in the fixed order
    assert "bbbbbbbb" in cpu and "aaaaaaaa" not in cpu and "9.00 s" not in cpu
    assert "| benchmark | numpy | torch:cpu |" in cpu
    assert "| `Exp.time_exp (n=10)` | 2 ms (×2.00) | **1 ms (×1.00)** |" in cpu
    # a missing cell (None) is n/a; the only backend of a row is its fastest
    assert "| `Exp.time_exp (n=1000)` | **500 ms (×1.00)** | n/a |" in cpu
    # memory and unparametrised benchmarks are not timing-per-backend rows
    assert "peakmem" not in text and "time_x" not in text
    assert "Some CPU, 2" in cpu
    assert "| benchmark | torch:cuda | cupy |" in gpu
    assert "| `Exp.time_exp (n=10)` | 40 µs (×4.00) | **10 µs (×1.00)** |" in gpu


def test_report_without_results(tmp_path):
    text = report.report(tmp_path / "none")
    assert "No saved asv results" in text and "|" not in text


def test_main_writes_file(tmp_path):
    (tmp_path / "r").mkdir()
    write_results(tmp_path / "r")
    out = tmp_path / "t.md"
    assert report.main(["--results", str(tmp_path / "r"), "--out", str(out)]) == 0
    assert out.read_text() == report.report(tmp_path / "r")
