"""nox sessions for lieconv.

    nox                      # default: tests for every backend, strict, consistency, lint
    nox -s "tests(backend='torch')"
    nox -s consistency       # cross-backend table; fails on a deviation > 1e-10 / 1e-5
    nox -s bench             # asv run --quick against the current environment (offline)
    nox -s bench-report      # docs/benchmark-tables.md from saved asv results, backends as columns
    nox -s gpu               # GPU tests + consistency incl. torch:cuda / jax:gpu / cupy (opt-in)
    nox -s docs              # the Sphinx site, warnings as errors, into docs/_build/html
    nox -s mutants           # mutation testing of groups/ and the kernels' dispatch (opt-in, slow)

Environments. Every session runs in the interpreter nox itself runs in (run the project venv's
``.venv/bin/nox``) and by default installs nothing: ``venv_backend="none"`` sessions work offline
and reuse what is installed. Set ``LIECONV_NOX_INSTALL=1`` to let the sessions that need extras
(``tests``, ``strict``, ``gpu``) install them into that same environment —
``pip install -c .ci/constraints.txt -e .[test,<backend>]`` (CI does this on a fresh runner).
A session whose backend is not installed is skipped, not failed.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).parent
CONSTRAINTS = str(ROOT / ".ci" / "constraints.txt")
PY = sys.executable  # sessions run in nox's own interpreter (venv_backend="none")
sys.path.insert(0, str(ROOT))
from lieconv_core._backend import backends as _registered  # noqa: E402  (the backend registry)

#: the registered backends that run on the host (test sessions); accelerator-only ones (cupy)
#: run in the ``gpu`` session
BACKENDS = [e.name for e in _registered() if e.specs]
#: the framework module each backend needs
MODULE = {e.name: e.requires for e in _registered()}
#: the pyproject extra that installs each backend
EXTRA = {e.name: e.extra for e in _registered()}
#: consistency specs: on the host, and on accelerators
HOST_SPECS = [s for e in _registered() for s in e.specs]
ACCELERATOR_SPECS = [s for e in _registered() for s in e.accelerator_specs]

nox.options.sessions = ["tests", "strict", "consistency", "lint"]  # others: nox -s NAME
nox.options.reuse_existing_virtualenvs = True


def _install(session: nox.Session, *extras: str | None) -> None:
    """pip install the project with extras into the current environment, if allowed."""
    if os.environ.get("LIECONV_NOX_INSTALL") != "1":
        return
    names = ",".join(["test"] + [e for e in extras if e])
    session.run(PY, "-m", "pip", "install", "-c", CONSTRAINTS, "-e", f".[{names}]",
                external=True)


def _require(session: nox.Session, module: str) -> None:
    """Skip the session when ``module`` is not importable (same interpreter as the session)."""
    importlib.invalidate_caches()
    if importlib.util.find_spec(module) is None:
        session.skip(f"{module} is not installed (set LIECONV_NOX_INSTALL=1 to install it)")


@nox.session(venv_backend="none")
@nox.parametrize("backend", BACKENDS)
def tests(session: nox.Session, backend: str) -> None:
    """pytest with LIECONV_BACKEND=<backend> (the ``xp`` fixture still covers every installed
    backend; the env var picks the default namespace for functions that take no arrays)."""
    _install(session, EXTRA[backend])
    _require(session, MODULE[backend])
    session.run(PY, "-m", "pytest", *session.posargs, external=True,
                env={"LIECONV_BACKEND": backend})


@nox.session(venv_backend="none")
def strict(session: nox.Session) -> None:
    """The test suite with array_api_strict as the default backend: the portability canary."""
    _install(session)
    _require(session, "array_api_strict")
    session.run(PY, "-m", "pytest", *session.posargs, external=True,
                env={"LIECONV_BACKEND": "array_api_strict"})


@nox.session(venv_backend="none")
def consistency(session: nox.Session) -> None:
    """Every public function on every installed CPU backend against numpy; prints the table and
    fails on a deviation above 1e-10 (float64) / 1e-5 (float32). Extra args go to the script,
    e.g. ``nox -s consistency -- --only LieConv --repeats 1``."""
    args = session.posargs or ["--backends", ",".join(HOST_SPECS)]
    session.run(PY, "-m", "lieconv_core.tools.consistency", *args, external=True)


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """asv, offline, against the current environment (``-E existing``); quick mode by default.

    ``nox -s bench -- --bench layer`` passes extra asv arguments; ``LIECONV_BENCH_BACKENDS``
    narrows the backend:device list. ``--quick`` results are printed, not saved; for saved results
    (asv_bench/results, ``asv publish`` -> html/) pass e.g. ``-- -a repeat=1 -a warmup_time=0``.
    """
    asv = str(Path(sys.executable).parent / "asv")
    session.chdir(ROOT / "asv_bench")
    session.run(asv, "machine", "--yes", external=True)
    args = session.posargs or ["--quick"]
    session.run(asv, "run", "-E", f"existing:{sys.executable}", "--show-stderr",
                "--set-commit-hash", _head(), *args, external=True)


def _head() -> str:
    """The checked-out commit: asv saves the results of an existing environment only under a
    commit hash given with ``--set-commit-hash``."""
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    return out.stdout.strip()


@nox.session(name="bench-report", venv_backend="none")
def bench_report(session: nox.Session) -> None:
    """The benchmarks page's cross-backend tables from saved asv results (asv_bench/results):
    one table per machine, backends as columns, written to docs/benchmark-tables.md (commit it).
    Extra arguments go to ``asv_bench/report.py`` (``--results DIR``, ``--out FILE``)."""
    session.run(PY, str(ROOT / "asv_bench" / "report.py"), *session.posargs, external=True)


@nox.session(venv_backend="none")
def lint(session: nox.Session) -> None:
    """ruff check (line length 100, see pyproject)."""
    session.run(PY, "-m", "ruff", "check", ".", *session.posargs, external=True)


@nox.session(venv_backend="none")
def gpu(session: nox.Session) -> None:
    """GPU checks (off by default): tests marked/parametrised for GPUs and the consistency table
    including torch:cuda, jax:gpu and cupy. Needs a CUDA machine."""
    _install(session, "torch", "jax")
    session.run(PY, "-m", "pytest", *session.posargs, external=True,
                env={"LIECONV_BACKEND": "torch"})
    session.run(PY, "-m", "lieconv_core.tools.consistency", "--backends",
                ",".join(["numpy", *ACCELERATOR_SPECS]), external=True)


@nox.session(venv_backend="none")
def docs(session: nox.Session) -> None:
    """The documentation site, offline: sphinx-build with warnings as errors (``--keep-going``
    reports all of them), executing the examples/ gallery. Needs the ``docs`` extra
    (``LIECONV_NOX_INSTALL=1`` installs it). Output: docs/_build/html/index.html."""
    if os.environ.get("LIECONV_NOX_INSTALL") == "1":
        session.run(PY, "-m", "pip", "install", "-c", CONSTRAINTS, "-e", ".[docs]",
                    external=True)
    for module in ("sphinx", "pydata_sphinx_theme", "myst_parser", "sphinx_gallery", "numpydoc"):
        _require(session, module)
    path = os.pathsep.join([str(ROOT), str(ROOT / "backends"), os.environ.get("PYTHONPATH", "")])
    session.run(PY, "-m", "sphinx", "-W", "--keep-going", "-b", "html", str(ROOT / "docs"),
                str(ROOT / "docs" / "_build" / "html"), *session.posargs, external=True,
                env={"PYTHONPATH": path, "MPLBACKEND": "Agg"})


@nox.session(venv_backend="none")
def mutants(session: nox.Session) -> None:
    """Mutation testing (off by default: it runs the target's tests once per mutant): one-operator
    mutants of the group actions, exp/log and lifts (groups/) and of the Triton / Pallas dispatch,
    each run against the tests that must kill it; prints every survivor and the score. Extra
    arguments go to ``tests/_mutants.py``, e.g. ``nox -s mutants -- --only groups --max 20`` or
    ``-- --only groups-full`` (the helpers and pair logs too). See docs/contributing.md."""
    session.run(PY, "-m", "tests._mutants", *session.posargs, external=True)
