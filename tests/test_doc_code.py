"""Every Python code block of the README and of the docs pages runs, under each backend.

The blocks of one file run in order in one fresh interpreter (later blocks use the names earlier
ones define, as a reader would), in a temporary working directory, with ``LIECONV_BACKEND`` set
to numpy, torch and jax in turn. ``<!-- invisible-code-block: python ... -->`` comments hold set-up
a page needs but does not show (e.g. a small run that a loading example reads); they run in their
place in the sequence.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```$|^<!-- invisible-code-block: python\n(.*?)^-->$",
                   re.M | re.S)


def code_blocks(path: Path) -> list[str]:
    """The Python blocks of a Markdown file, visible and invisible, in order."""
    return [a or b for a, b in BLOCK.findall(path.read_text())]


def test_blocks_are_found():
    # the extraction itself: the README's three quickstarts and the own-data example at least
    readme = code_blocks(ROOT / "README.md")
    assert len(readme) >= 4
    assert any("FunctionalModule" in b for b in readme)
    assert any("jax.jit" in b for b in readme)
    assert any("Classifier" in b for b in readme)
    assert "main([" in "".join(code_blocks(ROOT / "docs" / "training.md"))  # the invisible set-up


CASES = [(p, b) for p in PAGES if code_blocks(p) for b in ("numpy", "torch", "jax")]


@pytest.mark.parametrize("page,backend", CASES,
                         ids=[f"{p.name}-{b}" for p, b in CASES])
def test_code_blocks_run(page: Path, backend: str, tmp_path: Path):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    blocks = code_blocks(page)
    needs = {m for m in ("torch", "jax") if re.search(rf"^\s*import {m}\b", "".join(blocks), re.M)}
    missing = [m for m in needs if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{page.name} uses {missing}, not installed")
    # one script; each block announces itself so a failure names the block
    script = "\n".join(f"print('--- block {i}', flush=True)\n{b}" for i, b in enumerate(blocks))
    script += "\nprint('--- all blocks ran', flush=True)\n"
    env = dict(os.environ, LIECONV_BACKEND=backend, MPLBACKEND="Agg", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "backends"),
                                           os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{page.name} under {backend}:\n{proc.stdout}\n{proc.stderr}"
    assert "--- all blocks ran" in proc.stdout
