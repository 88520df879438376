"""Run the asv benchmark classes directly, without asv (a machine without asv or a git checkout,
e.g. a lent GPU machine, or a quick look while editing).

    python asv_bench/direct.py --bench workloads,springs --backends torch:cuda,jax:gpu \
        --repeat 5 --json out.json

For every selected class and parameter combination it calls ``setup`` (a ``NotImplementedError``
there means "not available": the row is reported as skipped), then each ``time_`` method once as a
warm-up and ``--repeat`` times timed (median and min reported; the bodies synchronise GPU work
themselves), and each ``track_`` method once. ``peakmem_`` benchmarks are left to asv (they need a
fresh process each). Numbers are seconds (time) or the track's unit.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _classes(module: Any) -> list[type]:
    return [c for name, c in vars(module).items()
            if inspect.isclass(c) and not name.startswith("_") and c.__module__ == module.__name__
            and any(a.startswith(("time_", "track_")) for a in dir(c))]


def _combos(cls: type, backends: list[str] | None) -> list[tuple]:
    params = getattr(cls, "params", ())
    if params and not isinstance(params[0], (list, tuple)):
        params = (params,)
    combos = list(itertools.product(*params)) if params else [()]
    if backends is not None and params:
        # the backend is the first parameter by convention; replace its values by the requested
        rests = dict.fromkeys(tuple(c[1:]) for c in combos)
        combos = [(b, *rest) for b in backends for rest in rests]
    return combos


def run(modules: list[str], backends: list[str] | None, repeat: int,
        only: str | None = None) -> list[dict]:
    sys.path.insert(0, str(HERE))
    rows = []
    for modname in modules:
        module = importlib.import_module(f"benchmarks.{modname}")
        for cls in _classes(module):
            for combo in _combos(cls, backends):
                label = f"{modname}.{cls.__name__}{list(combo)}"
                if only and only not in label:
                    continue
                obj = cls()
                try:
                    if hasattr(obj, "setup"):
                        obj.setup(*combo)
                except NotImplementedError as exc:
                    rows.append({"bench": label, "skipped": str(exc)})
                    print(f"{label:70s} skipped: {exc}", flush=True)
                    continue
                except Exception as exc:  # a broken setup is a finding; the other cells still run
                    row = {"bench": label, "error": f"setup: {type(exc).__name__}: {exc}"[:500]}
                    rows.append(row)
                    print(_fmt(row), flush=True)
                    continue
                for meth in sorted(a for a in dir(obj) if a.startswith(("time_", "track_"))):
                    fn = getattr(obj, meth)
                    row = {"bench": f"{label}.{meth}"}
                    try:
                        if meth.startswith("track_"):
                            row["value"] = float(fn(*combo))
                            row["unit"] = getattr(fn, "unit", "")
                        else:
                            fn(*combo)  # warm-up
                            ts = []
                            for _ in range(repeat):
                                t0 = time.perf_counter()
                                fn(*combo)
                                ts.append(time.perf_counter() - t0)
                            row.update(median_s=statistics.median(ts), min_s=min(ts),
                                       repeat=repeat)
                    except NotImplementedError as exc:
                        row["skipped"] = str(exc)
                    except Exception as exc:  # report and go on: one broken cell is a finding
                        row["error"] = f"{type(exc).__name__}: {exc}"[:500]
                    rows.append(row)
                    print(_fmt(row), flush=True)
                if hasattr(obj, "teardown"):
                    obj.teardown(*combo)
    return rows


def _fmt(row: dict) -> str:
    if "median_s" in row:
        return f"{row['bench']:70s} median {row['median_s'] * 1e3:10.3f} ms  min " \
               f"{row['min_s'] * 1e3:10.3f} ms"
    if "value" in row:
        return f"{row['bench']:70s} {row['value']:14.4g} {row['unit']}"
    return f"{row['bench']:70s} {row.get('skipped') or row.get('error')}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", default="workloads",
                    help="comma-separated modules of asv_bench/benchmarks (e.g. workloads,springs)")
    ap.add_argument("--backends", default=None,
                    help="comma-separated backend:device specs replacing each class's own list")
    ap.add_argument("--only", default=None, help="substring a benchmark label must contain")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=None, help="write the rows to this JSON file (must be new)")
    ap.add_argument("--keep-freed-memory", action="store_true",
                    help="call lieconv_core.tools.malloc.keep_freed_memory() first (glibc keeps "
                         "freed "
                         "memory for reuse: no page faults for repeated large temporaries); "
                         "process-wide, so every row of the run has it")
    args = ap.parse_args(argv)
    if args.keep_freed_memory:
        from lieconv_core.tools.malloc import keep_freed_memory

        if not keep_freed_memory():
            ap.error("--keep-freed-memory: the C library is not glibc")
        print("# keep_freed_memory(): applied", flush=True)
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    if args.json and Path(args.json).exists():
        ap.error(f"--json {args.json} already exists; nothing was overwritten")
    backends = args.backends.split(",") if args.backends else None
    rows = run(args.bench.split(","), backends, args.repeat, args.only)
    if args.json:
        for r in rows:
            r["keep_freed_memory"] = args.keep_freed_memory
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
