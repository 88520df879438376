"""Group exp / log per group at two sizes (float32; jax jitted)."""

from lieconv_core.tools.consistency import _algebra, _groups

from ._common import BACKENDS, Bench, run_synced

GROUPS = ["T3", "SO2", "RxSO2", "SE2", "SO3", "SE3"]


class ExpLog:
    params = (BACKENDS, GROUPS, [1000, 100000])
    param_names = ["backend", "group", "n"]

    def setup(self, spec, gname, n):
        self.b = b = Bench.get(spec)
        g = _groups()[gname]
        self.a = b.asarray(_algebra(g, n), "float32")
        self.exp = b.jit(lambda a: g.exp(b.xp, a))
        self.log = b.jit(lambda m: g.log(b.xp, m))
        self.M = self.exp(self.a)
        b.sync(self.log(self.M))

    def time_exp(self, spec, gname, n):
        run_synced(lambda: self.exp(self.a), self.b)

    def time_log(self, spec, gname, n):
        run_synced(lambda: self.log(self.M), self.b)
