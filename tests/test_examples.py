"""Every script in examples/ runs to the end at its tiny size (``LIECONV_EXAMPLE_SMALL=1``), in a
fresh interpreter with a non-interactive matplotlib backend. An example whose optional
dependency is missing is skipped, not failed. (The documentation build runs the same scripts at
their gallery size.)"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
#: top-level modules an example may import that the core install does not provide
OPTIONAL = ("scipy", "sklearn", "matplotlib", "torch", "jax")


def _needs(script: Path) -> list[str]:
    text = script.read_text()
    mods = set(re.findall(r"^\s*(?:from|import)\s+([A-Za-z_][A-Za-z0-9_]*)", text, re.M))
    mods |= {m for m in re.findall(r"^\s*from\s+(lieconv_\w+)", text, re.M)}
    needs = [m for m in OPTIONAL if m in mods]
    if "lieconv_torch" in mods:
        needs.append("torch")
    if "lieconv_jax" in mods:
        needs.append("jax")
    return needs


def test_examples_found():
    assert len(EXAMPLES) >= 7, [p.name for p in EXAMPLES]


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_at_tiny_size(script: Path, tmp_path: Path):
    missing = [m for m in _needs(script) if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{script.name} needs {', '.join(missing)}")
    env = {**os.environ, "LIECONV_EXAMPLE_SMALL": "1", "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "backends"),
                                          os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"{script.name} failed:\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}"
