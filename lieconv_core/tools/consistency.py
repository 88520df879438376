"""Cross-backend consistency table: every public function against numpy.

For every installed backend (``backend:device`` specs, see :data:`SPECS`) this runs each public
function — group exp/log, lift, farthest point sampling, neighbourhood search, the LieConv layer
forward and a small LieResNet forward — on identical inputs and identical (portable) random draws,
compares the result with numpy's, and prints one table: function, dtype, and per backend the
maximum deviation and the median time.

Deviation of float outputs is ``max|out − ref| / max(1, max|ref|)`` (absolute for values of order
one, relative for large ones); index outputs (FPS, neighbour indices and masks) count the fraction
of entries that differ, and must be exactly 0. The run fails (exit status 1) when a float deviation
exceeds 1e-10 in float64 or 1e-5 in float32 (the project's goal), or any index differs.

Run it with ``python -m lieconv_core.tools.consistency`` (``--help`` for options) or through
``nox -s consistency``. Frameworks are imported lazily, inside functions only. Asking for jax with
float64 switches jax's ``jax_enable_x64`` flag on for the process (the library itself never does).

:func:`resolve` (a ``backend:device`` spec -> :class:`Backend`) is shared with the asv benchmarks.
"""

from __future__ import annotations

import argparse
import math
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def all_specs() -> tuple[str, ...]:
    """Every ``backend[:device]`` spec of the registered backends, in table order: the host specs
    in registration order, then the accelerator specs.

    Returns
    -------
    tuple of str
    """
    from .._backend import backends

    entries = backends()
    return (tuple(s for e in entries for s in e.specs)
            + tuple(s for e in entries for s in e.accelerator_specs))


#: every backend:device spec of the backends registered when this module is imported
SPECS = all_specs()
#: deviation tolerances per dtype
TOL = {"float64": 1e-10, "float32": 1e-5}


class Unavailable(NotImplementedError):
    """The backend or device of a spec is not installed / not present on this machine.

    A ``NotImplementedError`` so that asv skips benchmarks whose setup raises it.
    """


@dataclass
class Backend:
    """A resolved ``backend:device`` spec: namespace, device, adapter and helpers."""

    spec: str
    name: str
    xp: Any
    device: Any
    adapter: Any = field(repr=False)

    def asarray(self, a: Any, dtype: str | None = None) -> Any:
        """numpy array -> backend array on this device (floats cast to ``dtype`` if given)."""
        a = np.asarray(a)
        if dtype is not None and a.dtype.kind == "f":
            a = a.astype(dtype)
        dt = getattr(self.xp, a.dtype.name)
        if self.device is None:
            return self.xp.asarray(a, dtype=dt)
        return self.xp.asarray(a, dtype=dt, device=self.device)

    def tree(self, tree: Any, dtype: str) -> Any:
        """Nested dict of numpy arrays -> backend arrays (floats to ``dtype``)."""
        from ..nn.module import to_backend

        return to_backend(tree, self.xp, getattr(self.xp, dtype), self.device)

    def sync(self, x: Any = None) -> None:
        """Block until queued work (on jax: the work producing x) is done.

        Parameters
        ----------
        x : array or None
            The result waited for.
        """
        self.adapter.synchronize(x)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(self.adapter.to_numpy(x))


def resolve(spec: str, x64: bool = False) -> Backend:
    """``"torch:cuda"`` etc. -> :class:`Backend`; raises :class:`Unavailable` when the framework is
    not installed or the device is absent. ``x64`` switches jax's float64 support on (needed for
    float64 on jax; the benchmarks in float32 leave it off)."""
    from .._backend import adapter_for, namespace_for

    name, _, dev = spec.partition(":")
    specs = all_specs()
    if spec not in specs:
        raise ValueError(f"unknown backend spec {spec!r}; choose from {', '.join(specs)}")
    try:
        xp = namespace_for(name)
        adapter = adapter_for(xp)
    except ImportError as exc:
        raise Unavailable(f"{spec}: {name} is not installed ({exc})") from exc
    if x64:
        adapter.configure(float64=True)
    try:
        device = adapter.device(xp, dev or None)
    except Exception as exc:  # RuntimeError, or a driver error without a device
        raise Unavailable(f"{spec}: no such device here ({exc})") from exc
    return Backend(spec, name, xp, device, adapter)


def available(specs: Sequence[str] | None = None, x64: bool = False) -> list[Backend]:
    """The resolvable specs, in order (unavailable ones are skipped silently).

    Parameters
    ----------
    specs : sequence of str or None
        ``backend[:device]`` specs; None: :func:`all_specs`.
    x64 : bool
        Switch float64 support on where a backend needs it (jax).

    Returns
    -------
    list of Backend
    """
    out = []
    for s in all_specs() if specs is None else specs:
        try:
            out.append(resolve(s, x64=x64))
        except Unavailable:
            pass
    return out


# --- the checks ----------------------------------------------------------------------------------
# A check is f(backend, dtype) -> numpy array or tuple of numpy arrays; inputs are built on the host
# from fixed seeds so that every backend sees the same numbers.


def _groups() -> dict[str, Any]:
    from ..groups import SE2, SE3, SO2, SO3, RxSO2, T

    return {"T3": T(3), "SO2": SO2(), "RxSO2": RxSO2(), "SE2": SE2(), "SO3": SO3(), "SE3": SE3()}


def _algebra(group: Any, n: int, seed: int = 0) -> np.ndarray:
    """Algebra elements with rotation angles spread over (−π, π) (SO(3)/SE(3): up to ‖ω‖ ≈ π)."""
    gen = np.random.default_rng(seed)
    a = gen.normal(size=(n, group.lie_dim))
    if type(group).__name__ in ("SO3", "SE3"):
        w = a[:, :3]
        angle = gen.uniform(0, math.pi * 0.999, size=(n, 1))
        w *= angle / np.linalg.norm(w, axis=1, keepdims=True)
    elif type(group).__name__ in ("SO2", "SE2"):
        a[:, 0] = gen.uniform(-math.pi * 0.999, math.pi * 0.999, size=n)
    return a


def _exp_check(gname: str, n: int = 512) -> Callable:
    def f(b: Backend, dtype: str):
        g = _groups()[gname]
        return b.to_numpy(g.exp(b.xp, b.asarray(_algebra(g, n), dtype)))

    return f


def _log_check(gname: str, n: int = 512) -> Callable:
    def f(b: Backend, dtype: str):
        import array_api_compat.numpy as npx

        g = _groups()[gname]
        M = np.asarray(g.exp(npx, _algebra(g, n)))  # host float64 matrices, same on every backend
        return b.to_numpy(g.log(b.xp, b.asarray(M, dtype)))

    return f


def _cloud_host(d: int, bs: int, n: int, c: int, seed: int = 1, pad: bool = True):
    gen = np.random.default_rng(seed)
    coords = gen.normal(size=(bs, n, d))
    values = gen.normal(size=(bs, n, c))
    mask = np.ones((bs, n), bool)
    if pad:
        for i in range(bs):
            mask[i, n - i * (n // (2 * bs)):] = False
    return coords, values, mask


def _lift_check(gname: str, ns: int) -> Callable:
    def f(b: Backend, dtype: str):
        from ..cloud import lift
        from ..random import PortableDraws

        g = _groups()[gname]
        coords, values, mask = _cloud_host(g.space_dim, 2, 64, 3)
        cl = lift(g, b.asarray(coords, dtype), b.asarray(values, dtype), b.asarray(mask), ns,
                  PortableDraws(7))
        return (b.to_numpy(cl.elems),) + (() if cl.q is None else (b.to_numpy(cl.q),))

    return f


def _lifted_host(gname: str, ns: int, bs: int, n: int, c: int, dtype: str):
    """A cloud lifted on the host by numpy (in ``dtype``); backends get exactly these numbers."""
    import array_api_compat.numpy as npx

    from ..cloud import lift
    from ..random import PortableDraws

    g = _groups()[gname]
    coords, values, mask = _cloud_host(g.space_dim, bs, n, c)
    cl = lift(g, npx.asarray(coords.astype(dtype)), npx.asarray(values.astype(dtype)), mask, ns,
              PortableDraws(3))
    return g, cl


def _to_cloud(b: Backend, cl: Any, dtype: str) -> Any:
    from ..cloud import Cloud

    return Cloud(b.asarray(cl.elems, dtype), None if cl.q is None else b.asarray(cl.q, dtype),
                 b.asarray(cl.values, dtype), b.asarray(cl.mask))


def _fps_check(gname: str, ns: int, n: int, m: int) -> Callable:
    def f(b: Backend, dtype: str):
        from ..neighbourhoods import fps

        g, cl = _lifted_host(gname, ns, 2, n, 1, dtype)
        c = _to_cloud(b, cl, dtype)
        u = b.asarray(np.array([0.3, 0.8]), dtype)
        idx = fps(b.adapter, b.xp, g, c.elems, c.q, c.mask, m, u)
        return b.to_numpy(idx).astype(np.int64)

    return f


def _nbhd_check(gname: str, ns: int, n: int, k: int, knn: bool,
                chunk_pairs: int | None = None) -> Callable:
    """``chunk_pairs``: the search's chunk bound (None: the adapter's default)."""

    def f(b: Backend, dtype: str):
        from ..neighbourhoods import neighbourhood

        g, cl = _lifted_host(gname, ns, 2, n, 1, dtype)
        c = _to_cloud(b, cl, dtype)
        bs, nn = cl.mask.shape
        prio = b.asarray(np.random.default_rng(5).permuted(
            np.broadcast_to(np.arange(nn), (bs, nn)), axis=1))
        r = b.asarray(np.asarray(1.0), dtype)
        pts = (c.elems, c.q, c.mask)
        idx, valid, _ = neighbourhood(b.adapter, b.xp, g, pts, pts, k, r, prio, knn,
                                      chunk_pairs=chunk_pairs)
        idx, valid = b.to_numpy(idx).astype(np.int64), b.to_numpy(valid)
        return np.where(valid, idx, -1)  # indices of masked-off slots are unspecified

    return f


def _conv_check(gname: str, ns: int, n: int, ds_frac: float, knn: bool,
                chunk_elems: int | None = None) -> Callable:
    """``chunk_elems``: the layer's aggregation chunk bound (None: the adapter's default)."""

    def f(b: Backend, dtype: str):
        from ..nn import LieConv
        from ..nn.module import Model
        from ..random import PortableDraws

        g, cl = _lifted_host(gname, ns, 2, n, 8, dtype)
        conv = LieConv(8, 12, g, nbhd=16, ds_frac=ds_frac, fill=0.5, knn=knn, mean=True, bn=True)
        conv.chunk_elems = chunk_elems
        params, state = conv.init_host(np.random.default_rng(11))
        ctx = Model.context(b.xp, False, PortableDraws(13))
        out, _ = conv.apply(b.tree(params, dtype), b.tree(state, dtype), _to_cloud(b, cl, dtype),
                            ctx)
        return b.to_numpy(out.values)

    return f


def _resnet_check(gname: str, ns: int, train: bool) -> Callable:
    def f(b: Backend, dtype: str):
        from ..nn import LieResNet

        g = _groups()[gname]
        model = LieResNet(3, 2, k=32, nbhd=12, ds_frac=[1.0, 0.5], num_layers=2, fill=0.5,
                          liftsamples=ns, group=g)
        params, state = model.init(0, dtype, xp=b.xp, device=b.device)
        coords, values, mask = _cloud_host(g.space_dim, 2, 40, 3)
        out, _ = model.apply(params, state, (b.asarray(coords, dtype), b.asarray(values, dtype),
                                             b.asarray(mask)), train=train, rng=17)
        return b.to_numpy(out)

    return f


def checks() -> dict[str, tuple[Callable, bool]]:
    """name -> (check, is_index_output)."""
    out: dict[str, tuple[Callable, bool]] = {}
    for g in _groups():
        out[f"exp {g}"] = (_exp_check(g), False)
        out[f"log {g}"] = (_log_check(g), False)
    for g, ns in (("T3", 1), ("SO3", 2), ("SE2", 2), ("SE3", 4)):
        out[f"lift {g} ns={ns}"] = (_lift_check(g, ns), False)
    out["fps T3 64/400"] = (_fps_check("T3", 1, 400, 64), True)
    out["fps SE2 ns=2 32/100"] = (_fps_check("SE2", 2, 100, 32), True)
    out["nbhd ball T3"] = (_nbhd_check("T3", 1, 300, 16, False), True)
    out["nbhd knn T3"] = (_nbhd_check("T3", 1, 300, 16, True), True)
    out["nbhd ball SE3 ns=2"] = (_nbhd_check("SE3", 2, 100, 16, False), True)
    # several query chunks, the last one shorter (2·300·7 pairs: chunks of 7 of 300 queries)
    out["nbhd ball T3 chunks"] = (_nbhd_check("T3", 1, 300, 16, False, 2 * 300 * 7), True)
    out["LieConv T3"] = (_conv_check("T3", 1, 200, 1.0, False), False)
    out["LieConv T3 ds=0.5 knn"] = (_conv_check("T3", 1, 200, 0.5, True), False)
    out["LieConv SE3 ns=2"] = (_conv_check("SE3", 2, 60, 1.0, False), False)
    # bs·k·32 = 1024 elements per query: chunks of 7 of the 120 queries, the last one shorter
    out["LieConv SE3 ns=2 chunks"] = (_conv_check("SE3", 2, 60, 1.0, False, 7 * 1024), False)
    out["LieResNet T3 eval"] = (_resnet_check("T3", 1, False), False)
    out["LieResNet SE2 eval"] = (_resnet_check("SE2", 2, False), False)
    out["LieResNet T3 train"] = (_resnet_check("T3", 1, True), False)
    return out


def deviation(out: Any, ref: Any, index: bool) -> float:
    """Max scaled deviation (floats) or fraction of differing entries (indices); inf on a shape
    mismatch."""
    outs = out if isinstance(out, tuple) else (out,)
    refs = ref if isinstance(ref, tuple) else (ref,)
    dev = 0.0
    for o, r in zip(outs, refs, strict=True):
        o, r = np.asarray(o), np.asarray(r)
        if o.shape != r.shape:
            return math.inf
        if o.size == 0:
            continue
        if index:
            dev = max(dev, float(np.mean(o != r)))
        else:
            scale = max(1.0, float(np.max(np.abs(r))))
            d = np.abs(o.astype(np.float64) - r.astype(np.float64))
            dev = max(dev, math.inf if not np.all(np.isfinite(d)) else float(np.max(d)) / scale)
    return dev


@dataclass
class Row:
    function: str
    dtype: str
    spec: str
    deviation: float
    median_s: float
    ok: bool
    error: str = ""


def _timed(fn: Callable, b: Backend, dtype: str, repeats: int) -> tuple[Any, float]:
    """Output and median time of ``repeats`` runs after a warm-up (jax compiles op by op, torch
    allocates); ``repeats=0``: one run, timed cold."""
    t0 = time.perf_counter()
    out = fn(b, dtype)
    b.sync()
    times = [time.perf_counter() - t0] if repeats < 1 else []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(b, dtype)
        b.sync()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def run(specs: Sequence[str] | None = None, dtypes: Sequence[str] = ("float64", "float32"),
        only: Sequence[str] | None = None, repeats: int = 3, progress: bool = False,
        rows: list[Row] | None = None) -> list[Row]:
    """Run every check (or those whose name contains one of ``only``) on every available spec.
    ``progress``: a tqdm bar on stderr naming the check being run. ``rows``: a list the rows are
    appended to as they come (so that a caller keeps them when the run is interrupted); returned.
    """
    from tqdm.auto import tqdm

    backends = available(specs or None, x64="float64" in dtypes)
    if not backends or backends[0].spec != "numpy":
        backends = [resolve("numpy")] + [b for b in backends if b.spec != "numpy"]
    rows = [] if rows is None else rows
    selected = {name: c for name, c in checks().items()
                if not only or any(o in name for o in only)}
    bar = tqdm(total=len(selected) * len(dtypes), desc="consistency", unit="check",
               disable=not progress, file=sys.stderr)
    try:
        for name, (fn, index) in selected.items():
            for dtype in dtypes:
                bar.set_postfix_str(f"{name} {dtype}")
                bar.update(1)
                ref = None
                for b in backends:
                    try:
                        out, t = _timed(fn, b, dtype, repeats)
                    except Exception as exc:  # report, don't stop the table
                        rows.append(Row(name, dtype, b.spec, math.inf, math.nan, False,
                                        f"{type(exc).__name__}: {exc}"))
                        continue
                    if ref is None:
                        ref = out
                    dev = deviation(out, ref, index)
                    ok = dev == 0 if index else dev <= TOL[dtype]
                    rows.append(Row(name, dtype, b.spec, dev, t, ok))
    finally:
        bar.close()
    return rows


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def format_table(rows: Sequence[Row]) -> str:
    """Wide table: one line per (function, dtype), one 'deviation  median-ms' cell per backend."""
    specs = list(dict.fromkeys(r.spec for r in rows))
    keys = list(dict.fromkeys((r.function, r.dtype) for r in rows))
    cell = {(r.function, r.dtype, r.spec): r for r in rows}
    w0 = max([len("function")] + [len(f) for f, _ in keys])
    w = 22
    lines = [f"{'function':<{w0}}  {'dtype':<7}  " + "  ".join(f"{s:<{w}}" for s in specs)]
    sub = "  ".join(f"{'max dev  median ms':<{w}}" for _ in specs)
    lines.append(f"{'':<{w0}}  {'':<7}  " + sub)
    for f, dt in keys:
        parts = []
        for s in specs:
            r = cell.get((f, dt, s))
            if r is None:
                parts.append(f"{'-':<{w}}")
            elif r.error:
                parts.append(f"{'ERROR':<{w}}")
            else:
                flag = "" if r.ok else " !"
                parts.append(f"{r.deviation:8.1e} {r.median_s * 1e3:9.2f}{flag}".ljust(w))
        lines.append(f"{f:<{w0}}  {dt:<7}  " + "  ".join(parts))
    errors = [r for r in rows if r.error]
    for r in errors:
        lines.append(f"ERROR {r.function} {r.dtype} {r.spec}: {r.error}")
    bad = [r for r in rows if not r.ok]
    lines.append(f"{len(rows) - len(bad)}/{len(rows)} within tolerance "
                 f"(float64 {TOL['float64']:g}, float32 {TOL['float32']:g}, indices exact); "
                 "'!' marks a failure")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lieconv_core.tools.consistency",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", default=",".join(all_specs()),
                   help="comma-separated backend:device specs (unavailable ones are skipped)")
    p.add_argument("--dtypes", default="float64,float32")
    p.add_argument("--only", default="", help="comma-separated substrings of check names")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed runs per cell after a warm-up (median); 0: one cold run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    a = p.parse_args(argv)
    if a.repeats < 0:
        p.error("--repeats must be >= 0")
    rows: list[Row] = []
    # `timeout` and schedulers stop a run with SIGTERM: print the rows done so far, as on Ctrl-C
    main_thread = threading.current_thread() is threading.main_thread()  # signal's condition
    previous = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None
    try:
        run([s for s in a.backends.split(",") if s], [d for d in a.dtypes.split(",") if d],
            [o for o in a.only.split(",") if o] or None, a.repeats, progress=not a.no_progress,
            rows=rows)
    except KeyboardInterrupt:
        if rows:
            print(format_table(rows))
        done = len({(r.function, r.dtype) for r in rows})
        print(f"INTERRUPTED after {done} (check, dtype) pairs; the table above is partial")
        return 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    print(format_table(rows))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
