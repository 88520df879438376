"""Every public function, class and method in the API reference has a numpydoc docstring.

Scope: each class and function that ``docs/api.md`` lists, and the public methods a listed class
defines in its own body. A method without a docstring of its own that overrides a documented
method shows the base's docstring on the site (Sphinx inherits it), so the base's is validated.

Checks (``numpydoc.validate`` codes): GL08 a docstring exists; SS01 it has a summary line; PR01
every parameter of the signature is documented; PR02 no documented parameter is missing from the
signature; RT01 a function or method that returns a value has a Returns section. Nothing is
exempt; ``python tests/test_docstrings.py`` prints what fails.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_docs import documented_names, resolve  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHECKS = ("GL08", "SS01", "PR01", "PR02", "RT01")


def _source(obj) -> str:
    try:
        path = Path(inspect.getsourcefile(inspect.unwrap(obj))).resolve()
        return path.relative_to(ROOT).as_posix()
    except (TypeError, ValueError):
        return ""


def _doc_owner(cls: type, attr: str) -> str | None:
    """The qualified name whose docstring the site shows for ``cls.attr``."""
    for klass in cls.__mro__:
        member = vars(klass).get(attr)
        if member is None:
            continue
        func = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
        if getattr(func, "__doc__", None):
            return f"{klass.__module__}.{klass.__qualname__}.{attr}"
    return None


def targets() -> list[tuple[str, str, str]]:
    """(shown name, name to validate, source file) of everything in scope."""
    out = []
    for name in sorted(documented_names()):
        obj = resolve(name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not getattr(obj, "__module__", "").startswith(("lieconv_core", "lieconv_")):
            continue  # type aliases of typing.Any
        out.append((name, f"{obj.__module__}.{obj.__qualname__}", _source(obj)))
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                if not (inspect.isfunction(member)
                        or isinstance(member, staticmethod | classmethod | property)):
                    continue
                owner = _doc_owner(obj, attr) or f"{obj.__module__}.{obj.__qualname__}.{attr}"
                out.append((f"{name}.{attr}", owner, _source(obj)))
    return out


def problems(qualname: str) -> list[str]:
    from numpydoc.validate import validate

    return [f"{code} {msg}" for code, msg in validate(qualname)["errors"] if code in CHECKS]


@pytest.mark.skipif(importlib.util.find_spec("numpydoc") is None,
                    reason="numpydoc (the docs extra) is not installed")
def test_public_docstrings():
    scope = targets()
    assert len(scope) > 150
    failures = {}
    for shown, qualname, _ in scope:
        errs = problems(qualname)
        if errs:
            failures[shown] = errs
    assert not failures, "\n".join(f"{k}: {v}" for k, v in sorted(failures.items()))


if __name__ == "__main__":
    sys.path[:0] = [str(ROOT), str(ROOT / "backends")]
    for shown, qualname, src in targets():
        errs = problems(qualname)
        if errs:
            print(f"{src}: {shown}: {'; '.join(e.split(' ', 1)[0] for e in errs)}")
