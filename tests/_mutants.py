"""Mutation testing of the group actions, exp/log, lifts and the kernels' dispatch.

Each mutant changes one operator, comparison, constant or return value inside one of the target
functions (see ``TARGETS``); the target's tests then run against it (``pytest -x``): for the
groups in this process, with the mutated function swapped in for every reference to the
original, for the kernels' dispatch in a scratch copy of the repository with the mutated file.
A mutant is *killed* when they fail, *survives* when they pass. The score is killed / total.
Surviving mutants that cannot change behaviour (equivalent mutants) are listed, with the reason,
in ``EQUIVALENT`` and reported apart; docs/contributing.md
("Mutation testing") has the current score.

    python -m tests._mutants                       # groups, triton, pallas
    python -m tests._mutants --only groups --list  # the mutants, without running them
    python -m tests._mutants --only groups --max 20

Run through ``nox -s mutants`` (extra arguments are passed on).
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTEST = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
          "--hypothesis-seed=0"]
#: the group methods every test of equivariance rests on
_GROUP_CORE = {"act_on_points", "act_on_elements", "random_element", "lift", "exp", "log"}
#: plus the helpers behind them and the pair logs (``--only groups-full``: several times longer)
_GROUP_FUNCS = _GROUP_CORE | {"pair_log", "se2_exp", "se2_log", "_se2_log_parts", "rot2", "rotate2",
                "quat_to_rotmat", "haar_rotations", "align_e1", "rot_e1", "se3_exp", "se3_log",
                "se3_log_parts", "_homogeneous", "uniform_angle", "so3_exp", "so3_log",
                "so3_log_parts", "wrap_angle", "hat3", "_cols"}
_GROUP_FILES = ["base.py", "translation.py", "trivial.py", "so2.py", "rxso2.py", "se2.py", "so3.py",
                "se3.py", "subgroup.py", "_special.py"]
_NUMPY_ONLY = "not torch and not jax and not array_api_strict and not float32"

#: name -> (files, function names to mutate, pytest arguments that must kill the mutants)
_GROUP_TESTS = ["tests/test_equivariance.py", "tests/test_groups.py", "tests/test_lift.py", "-k",
                _NUMPY_ONLY]
TARGETS = {
    "groups": ([f"lieconv_core/groups/{f}" for f in _GROUP_FILES], _GROUP_CORE, _GROUP_TESTS),
    "groups-full": ([f"lieconv_core/groups/{f}" for f in _GROUP_FILES], _GROUP_FUNCS,
                    _GROUP_TESTS),
    "triton": (["backends/lieconv_torch/adapter.py"], {"_launchers"},
               ["tests/test_kernels_triton.py"]),
    "pallas": (["backends/lieconv_jax/adapter.py"], {"_pallas"},
               ["tests/test_kernels_pallas.py", "-k", "single-point or lax_fps"]),
}

#: target sets whose tests run in this process (the numpy tests of the groups); the kernel tests
#: run in a scratch copy, one pytest process per mutant (jax's caches, Triton's interpreter)
IN_PROCESS = {"groups", "groups-full"}

#: (file, function, line, mutation) -> why the mutant cannot change behaviour
_SPREAD = "changes only the spread of the random elements, which no contract fixes"
_ORIGIN = ("changes only the frame used for a point at the origin, where every rotation is a "
           "lift (its stabilizer is all of SO(3)): align_e1 still returns a rotation")
EQUIVALENT: dict[tuple[str, str, int, str], str] = {
    ("lieconv_core/groups/translation.py", "random_element", 32, "Mult -> Div"): _SPREAD,
    ("lieconv_core/groups/translation.py", "random_element", 32, "3 -> 4"): _SPREAD,
    ("lieconv_core/groups/rxso2.py", "random_element", 42, "Mult -> Div"): _SPREAD,
    ("lieconv_core/groups/rxso2.py", "random_element", 42, "0.5 -> 1.5"): _SPREAD,
    ("lieconv_core/groups/se2.py", "random_element", 141, "Mult -> Div"): _SPREAD,
    ("lieconv_core/groups/se2.py", "random_element", 141, "3 -> 4"): _SPREAD,
    ("lieconv_core/groups/se3.py", "random_element", 108, "Mult -> Div"): _SPREAD,
    ("lieconv_core/groups/se3.py", "random_element", 108, "3 -> 4"): _SPREAD,
    ("lieconv_core/groups/trivial.py", "act_on_points", 37, "return coords (no-op)"):
        "the trivial group's action already returns its input",
    ("lieconv_core/groups/trivial.py", "act_on_elements", 40, "return elems (no-op)"):
        "the trivial group's action already returns its input",
    ("lieconv_core/groups/se2.py", "lift", 83, "Add -> Sub"):
        "phase − 2πs/ns instead of phase + 2πs/ns: the same equally spaced set of stabilizer "
        "angles in another order (the layer is symmetric in a point's samples)",
    ("lieconv_core/groups/so3.py", "lift", 84, "Gt -> GtE"):
        "at the origin the direction becomes 0 instead of e1; align_e1(0) = align_e1(e1) = I",
    ("lieconv_core/groups/so3.py", "lift", 82, "Add -> Sub"): _ORIGIN,
    ("lieconv_core/groups/so3.py", "lift", 82, "1.0 -> 2.0"): _ORIGIN,
    ("lieconv_core/groups/subgroup.py", "lift", 36, "drop USub"):
        "unreachable: no abelian parent in the library (T(d), RxSO(2)) has an orbit id to "
        "concatenate with",
    ("lieconv_core/groups/subgroup.py", "lift", 36, "1 -> 2"):
        "unreachable: no abelian parent in the library (T(d), RxSO(2)) has an orbit id to "
        "concatenate with",
}

_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
         ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
         ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn,
         ast.NotIn: ast.In, ast.And: ast.Or, ast.Or: ast.And}


@dataclass(frozen=True)
class Mutant:
    """One mutation: the ``index``-th site of kind ``what`` in ``func`` of ``path``."""

    path: str
    func: str
    line: int
    what: str
    site: int  # position of the node in the function's ast.walk order

    def key(self) -> tuple[str, str, int, str]:
        return (self.path, self.func, self.line, self.what)


def _functions(tree: ast.Module, names: set[str]):
    """(name, node) of the functions and methods called ``names`` (nested ones included)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name in names:
            yield node.name, node


def _docstring(node: ast.AST) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)


def _sites(func: ast.FunctionDef):
    """(position, node, description) of every mutable node of ``func``."""
    skip = {id(n) for s in func.body if _docstring(s) for n in ast.walk(s)}
    for pos, node in enumerate(ast.walk(func)):
        if id(node) in skip:
            continue
        desc = _describe(node, func)
        if desc:
            yield pos, node, desc


def _describe(node: ast.AST, func: ast.FunctionDef) -> str | None:
    """What the mutation of ``node`` does, or None when it is not mutated."""
    if isinstance(node, (ast.BinOp, ast.BoolOp)) and type(node.op) in _SWAP:
        return f"{type(node.op).__name__} -> {_SWAP[type(node.op)].__name__}"
    if isinstance(node, ast.Compare) and type(node.ops[0]) in _SWAP:
        return f"{type(node.ops[0]).__name__} -> {_SWAP[type(node.ops[0])].__name__}"
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not)):
        return f"drop {type(node.op).__name__}"
    if (isinstance(node, ast.Constant) and type(node.value) in (int, float)
            and not isinstance(node.value, bool)):
        return f"{node.value!r} -> {node.value + 1!r}"
    if (isinstance(node, ast.Return) and node.value is not None
            and not (isinstance(node.value, ast.Constant) and node.value.value is None)):
        args = [a.arg for a in func.args.args if a.arg not in ("self", "xp")]
        if func.name.startswith("act_on") and args:
            return f"return {args[-1]} (no-op)"
        if func.name in ("_pallas", "_launchers"):
            return "return None"
    return None


def _mutate(node: ast.AST, func: ast.FunctionDef) -> None:
    """Apply the mutation ``_describe`` names, in place."""
    if isinstance(node, (ast.BinOp, ast.BoolOp)):
        node.op = _SWAP[type(node.op)]()
    elif isinstance(node, ast.Compare):
        node.ops = [_SWAP[type(node.ops[0])](), *node.ops[1:]]
    elif isinstance(node, ast.UnaryOp):  # -x -> +x (``not x`` is handled by the caller)
        node.op = ast.UAdd()
    elif isinstance(node, ast.Constant):
        node.value = node.value + 1
    elif isinstance(node, ast.Return):
        args = [a.arg for a in func.args.args if a.arg not in ("self", "xp")]
        if func.name.startswith("act_on"):
            node.value = ast.Name(id=args[-1], ctx=ast.Load())
        else:
            node.value = ast.Constant(value=None)


def enumerate_mutants(files: list[str], names: set[str]) -> list[Mutant]:
    out = []
    for path in files:
        tree = ast.parse((ROOT / path).read_text())
        for name, func in _functions(tree, names):
            for pos, node, desc in _sites(func):
                out.append(Mutant(path, name, getattr(node, "lineno", func.lineno), desc, pos))
    return out


def mutated_source(m: Mutant) -> str:
    """The source of ``m.path`` with the mutation applied."""
    tree = ast.parse((ROOT / m.path).read_text())
    for _, func in _functions(tree, {m.func}):
        nodes = list(ast.walk(func))
        if m.site < len(nodes) and _describe(nodes[m.site], func) == m.what \
                and getattr(nodes[m.site], "lineno", func.lineno) == m.line:
            node = nodes[m.site]
            if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):  # -> bool(x)
                parent = _parent(func, node)
                _replace(parent, node, ast.Call(ast.Name("bool", ast.Load()), [node.operand], []))
            else:
                _mutate(node, func)
            return ast.unparse(ast.fix_missing_locations(tree))
    raise LookupError(m)


def _parent(root: ast.AST, child: ast.AST) -> ast.AST:
    for node in ast.walk(root):
        for value in ast.iter_child_nodes(node):
            if value is child:
                return node
    raise LookupError(child)


def _replace(parent: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for field, value in ast.iter_fields(parent):
        if value is old:
            setattr(parent, field, new)
        elif isinstance(value, list):
            setattr(parent, field, [new if v is old else v for v in value])


def _module_name(path: str) -> str:
    parts = Path(path).with_suffix("").parts
    return ".".join(parts[1:] if parts[0] == "backends" else parts)


def _owner(tree: ast.Module, func: ast.FunctionDef) -> str | None:
    """The name of the top-level class that defines ``func``, or None for a module function."""
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(n is func for n in ast.walk(node)):
            return node.name
    return None


def _mutated_function(m: Mutant):
    """(owner name or None, the mutated function object) compiled in the module's globals."""
    import importlib

    tree = ast.parse((ROOT / m.path).read_text())
    for _, func in _functions(tree, {m.func}):
        nodes = list(ast.walk(func))
        node = nodes[m.site] if m.site < len(nodes) else None
        if node is None or _describe(node, func) != m.what or \
                getattr(node, "lineno", func.lineno) != m.line:
            continue
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            _replace(_parent(func, node), node,
                     ast.Call(ast.Name("bool", ast.Load()), [node.operand], []))
        else:
            _mutate(node, func)
        func.decorator_list = []
        src = ast.unparse(ast.fix_missing_locations(ast.Module([func], [])))
        module = importlib.import_module(_module_name(m.path))
        ns: dict = {}
        exec(compile(src, m.path, "exec"), vars(module), ns)  # noqa: S102
        return module, _owner(tree, func), ns[func.name]
    raise LookupError(m)


def _swap_everywhere(old, new) -> list:
    """Replace every reference to the function ``old`` in the loaded modules of the project (and
    their classes) by ``new``; returns the undo list of (holder, name, old)."""
    undo = []
    prefixes = ("lieconv_core", "lieconv_", "tests")
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(prefixes):
            continue
        for holder in [module, *[v for v in vars(module).values() if isinstance(v, type)]]:
            for key, value in list(vars(holder).items()):
                if value is old:
                    undo.append((holder, key, value))
                    setattr(holder, key, new)
    return undo


def run_in_process(mutants: list[Mutant], args: list[str], name: str) -> list[Mutant]:
    """Run every mutant's tests in this process (one import of the tests, the mutated function
    swapped in and out): much faster than a pytest process per mutant. Returns the survivors."""
    import contextlib
    import io

    import pytest

    argv = [*PYTEST[3:], *args]
    os.chdir(ROOT)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        base = pytest.main(argv)
    if base != 0:
        raise RuntimeError(f"{name}: the tests fail without any mutation (pytest exit {base})")
    survivors = []
    for i, m in enumerate(mutants):
        module, owner, new = _mutated_function(m)
        old = vars(getattr(module, owner))[m.func] if owner else getattr(module, m.func)
        undo = _swap_everywhere(old, new)
        try:
            with contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):
                rc = pytest.main(argv)
        finally:
            for holder, key, value in undo:
                setattr(holder, key, value)
        status = "SURVIVED" if rc == 0 else "killed"
        print(f"[{name} {i + 1}/{len(mutants)}] {status:8} {m.path}:{m.line} {m.func}: "
              f"{m.what}", flush=True)
        if rc == 0:
            survivors.append(m)
    return survivors


def _scratch() -> Path:
    """A copy of the files the tests need (code, tests, config), outside the repository."""
    tmp = Path(tempfile.mkdtemp(prefix="lieconv-mutants-"))
    for name in ("lieconv_core", "backends", "tests"):
        shutil.copytree(ROOT / name, tmp / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp / "pyproject.toml")
    return tmp


def run_tests(where: Path, args: list[str], timeout: float) -> str:
    """'pass', 'fail' or 'timeout' of ``pytest -x args`` in the scratch copy ``where``."""
    env = dict(os.environ, PYTHONPATH=f"{where}{os.pathsep}{where / 'backends'}",
               PYTHONDONTWRITEBYTECODE="1")
    try:
        proc = subprocess.run(PYTEST + args, cwd=where, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout"
    if proc.returncode == 5:
        raise RuntimeError(f"no tests selected by {args}")
    return "pass" if proc.returncode == 0 else "fail"


def run_target(name: str, limit: int | None, listing: bool,
               select: str = "") -> tuple[int, int, list[Mutant]]:
    """(killed, total, survivors) of one target set."""
    files, names, args = TARGETS[name]
    mutants = enumerate_mutants(files, names)
    if select:
        mutants = [m for m in mutants if any(part in f"{m.path}:{m.line} {m.func}: {m.what}"
                                             for part in select.split(","))]
    mutants = mutants[:limit]
    if listing:
        for m in mutants:
            print(f"{m.path}:{m.line} {m.func}: {m.what}")
        return 0, len(mutants), []
    if name in IN_PROCESS:
        survivors = run_in_process(mutants, args, name)
        return len(mutants) - len(survivors), len(mutants), survivors
    where = _scratch()
    try:
        start = time.perf_counter()
        if run_tests(where, args, timeout=1800) != "pass":
            raise RuntimeError(f"{name}: the tests fail without any mutation")
        budget = max(60.0, 5 * (time.perf_counter() - start))
        survivors = []
        for i, m in enumerate(mutants):
            (where / m.path).write_text(mutated_source(m))
            try:
                result = run_tests(where, args, budget)
            finally:
                shutil.copy(ROOT / m.path, where / m.path)
            status = "killed" if result != "pass" else "SURVIVED"
            print(f"[{name} {i + 1}/{len(mutants)}] {status:8} {m.path}:{m.line} {m.func}: "
                  f"{m.what}", flush=True)
            if result == "pass":
                survivors.append(m)
        return len(mutants) - len(survivors), len(mutants), survivors
    finally:
        shutil.rmtree(where, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="groups,triton,pallas",
                    help=f"comma-separated target sets, of: {', '.join(TARGETS)}")
    ap.add_argument("--max", type=int, default=None, help="at most this many mutants per set")
    ap.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    ap.add_argument("--select", default="", help="only the mutants whose 'path:line func: "
                    "mutation' line contains one of these comma-separated strings")
    opts = ap.parse_args(argv)
    killed = total = 0
    survivors: list[Mutant] = []
    for name in opts.only.split(","):
        k, t, s = run_target(name, opts.max, opts.list, opts.select)
        killed, total, survivors = killed + k, total + t, survivors + s
    if opts.list:
        print(f"{total} mutants")
        return 0
    equivalent = [m for m in survivors if m.key() in EQUIVALENT]
    live = [m for m in survivors if m.key() not in EQUIVALENT]
    for m in equivalent:
        print(f"equivalent: {m.path}:{m.line} {m.func}: {m.what} ({EQUIVALENT[m.key()]})")
    for m in live:
        print(f"survived:   {m.path}:{m.line} {m.func}: {m.what}")
    score = killed / max(1, total - len(equivalent))
    print(f"mutation score: {killed}/{total - len(equivalent)} killed = {score:.1%} "
          f"({len(equivalent)} equivalent mutants excluded, {len(live)} surviving)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
