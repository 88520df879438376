"""The documentation site: the API reference lists every public name, and the site builds.

``test_docs_build`` is the CI check of ``nox -s docs``: it runs ``sphinx-build -W --keep-going``
(every warning an error: broken cross-references, autodoc import failures, numpydoc parse
errors, MyST syntax, missing toctree entries) on a copy of ``docs/`` and ``examples/`` in a
temporary folder, offline. The gallery pages are generated but the examples are not executed
(``-D plot_gallery=0``): ``tests/test_examples.py`` runs every example already, and executing
them twice would double the cost. ``nox -s docs`` builds with the examples executed.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
API = ROOT / "docs" / "api.md"
#: packages (and subpackages) whose ``__all__`` the API reference must cover
PUBLIC = ["lieconv_core", "lieconv_core.groups", "lieconv_core.nn",
          "lieconv_core.neighbourhoods", "lieconv_core.app.io", "lieconv_core.tasks",
          "lieconv_core.app.training", "lieconv_torch", "lieconv_jax", "lieconv_cupy"]
DOCS_TOOLS = ["sphinx", "pydata_sphinx_theme", "myst_parser", "sphinx_gallery", "numpydoc"]


def documented_names() -> set[str]:
    """Fully qualified names the API page documents (autosummary entries and autodata)."""
    names, module, in_summary = set(), None, False
    for line in API.read_text().splitlines():
        if m := re.match(r"\.\. currentmodule:: (\S+)", line):
            module = m.group(1)
        elif m := re.match(r"\.\. auto(?:data|function|class):: (\S+)", line):
            names.add(m.group(1))
        elif line.startswith(".. autosummary::"):
            in_summary = True
        elif in_summary and (m := re.match(r"   ([A-Za-z_][\w.]*)\s*$", line)):
            names.add(f"{module}.{m.group(1)}")
        elif in_summary and line.strip() and not line.startswith("   "):
            in_summary = False
    return names


def resolve(qualname: str):
    """The object a dotted name refers to (importing its module)."""
    parts = qualname.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(qualname)


def test_documented_names_resolve():
    names = documented_names()
    assert len(names) > 60
    for name in names:
        resolve(name)  # raises for a name the reference lists but the code lacks


@pytest.mark.parametrize("module", PUBLIC)
def test_api_reference_lists_every_public_name(module: str):
    """Each name in ``module.__all__`` is on the API page, as itself or as the object it
    re-exports (a class documented once under its shortest public path)."""
    mod = importlib.import_module(module)
    public = [n for n in mod.__all__ if not n.startswith("__")
              and not isinstance(getattr(mod, n), type(mod))]  # subpackages have their own part
    names = documented_names()
    objects = {id(resolve(n)) for n in names}
    missing = [n for n in public if f"{module}.{n}" not in names
               and (isinstance(getattr(mod, n), str | tuple | dict)
                    or id(getattr(mod, n)) not in objects)]
    assert not missing, f"docs/api.md does not list {module}: {missing}"


#: files that name modules to run with ``python -m`` (the measurement log records old paths)
RUN_DOCS = [ROOT / "README.md", ROOT / "noxfile.py", *sorted((ROOT / "docs").glob("*.md")),
            *sorted((ROOT / "scripts").iterdir()), *sorted((ROOT / ".ci").iterdir())]


def run_modules(text: str) -> set[str]:
    """The project's modules that ``python -m MODULE`` commands in ``text`` run."""
    return set(re.findall(r"-m\s+(lieconv_[a-z_]+(?:\.[a-z_]+)*)", text))


def test_every_module_run_with_python_m_exists():
    """Every ``python -m lieconv_...`` in the README, nox, the docs pages, scripts/ and .ci/
    names a module that exists, so a command that a page or a script gives keeps working when a
    module moves; with a control for the pattern and for a moved module."""
    assert run_modules("python -m lieconv_core.tools.consistency --x") == {
        "lieconv_core.tools.consistency"}
    assert importlib.util.find_spec("lieconv_core.consistency") is None  # moved: caught
    missing = {}
    for path in RUN_DOCS:
        if path.is_file() and path.name != "history.md":
            for module in run_modules(path.read_text(errors="replace")):
                if importlib.util.find_spec(module) is None:
                    missing.setdefault(str(path.relative_to(ROOT)), []).append(module)
    assert not missing, missing


def test_docs_build(tmp_path: Path):
    missing = [m for m in DOCS_TOOLS if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"the docs extra is not installed ({missing})")
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("_build", "generated", "auto_examples", "__pycache__")
    shutil.copytree(ROOT / "docs", src / "docs", ignore=ignore)
    shutil.copytree(ROOT / "examples", src / "examples", ignore=ignore)
    out = tmp_path / "html"
    env = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "backends"),
                                           os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-D", "plot_gallery=0", str(src / "docs"), str(out)],
        env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for page in ["index", "getting-started", "concepts", "backends", "training", "benchmarks",
                 "architecture", "contributing", "api", "auto_examples/index"]:
        assert (out / f"{page}.html").is_file(), page
    # one generated reference page per listed name, with its docstring rendered
    for name in sorted(documented_names()):
        if name.startswith("lieconv_core.arrays."):
            continue  # the aliases are documented on the API page itself
        page = out / "generated" / f"{name}.html"
        assert page.is_file(), name
    assert "Parameters" in (out / "generated" / "lieconv_core.asarray.html").read_text()
    examples = sorted(p.stem for p in (ROOT / "examples").glob("plot_*.py"))
    assert examples
    for ex in examples:
        assert (out / "auto_examples" / f"{ex}.html").is_file(), ex
