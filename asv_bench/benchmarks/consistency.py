"""Max deviation of each backend from numpy (``lieconv_core.tools.consistency`` checks), as asv
``track_`` values: the LieConv layer and a small LieResNet, float64 and float32. 0 means
bit-identical; the tolerances are 1e-10 (float64) and 1e-5 (float32)."""

from lieconv_core.tools import consistency as cons

from ._common import BACKENDS, Bench

CHECKS = ["LieConv T3", "LieConv SE3 ns=2", "LieResNet T3 eval", "LieResNet SE2 eval"]


class Deviation:
    params = (BACKENDS, CHECKS, ["float64", "float32"])
    param_names = ["backend", "check", "dtype"]
    timeout = 600

    def setup(self, spec, check, dtype):
        self.b = Bench.get(spec, x64=dtype == "float64")
        self.ref = Bench.get("numpy")

    def track_max_deviation(self, spec, check, dtype):
        fn, index = cons.checks()[check]
        return cons.deviation(fn(self.b, dtype), fn(self.ref, dtype), index)

    track_max_deviation.unit = "max |Δ| / max(1, |ref|)"
