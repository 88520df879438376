"""QM9: regression of molecular properties from atom positions and charges with the molecule
LieResNet.

Two sources, both giving the same arrays — ``charges`` (n, 29) int (0 = padding),
``positions`` (n, 29, 3) float in Å and one column per target in :data:`TARGETS`' units:

* the Cormorant-format ``{train,valid,test}.npz`` files (keys ``num_atoms``, ``charges``,
  ``positions`` and the targets; ``<target>_thermo`` where present is subtracted):
  :func:`load_cormorant`;
* the CSV tables of the PyPI package ``qm9pack`` (all 130,831 molecules): :func:`load_qm9pack`,
  split 100,000 / 17,748 / 13,083 by a fixed-seed permutation (the sizes of the usual split;
  the permutation is this library's own).

Energies are converted from Hartree to eV (ZPVE to meV) and, for U0, U, H, G and Cv, the
atoms' reference values are subtracted (atomisation quantities), as in the paper's setup.
"""

from __future__ import annotations

import csv
import hashlib
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..groups import SO3
from ..nn.presets import QM9_CHARGES, molecule_features
from ..random import PortableDraws
from .base import DataError, Dataset, make_group, read_npz
from .clouds import CloudTask

MAX_ATOMS = 29
HARTREE_EV = 27.211386
#: target -> (unit in the datasets, factor from the stored file's unit, paper's unit, factor to it)
TARGETS = {
    "alpha": ("bohr^3", 1.0, "bohr^3", 1.0), "gap": ("eV", HARTREE_EV, "meV", 1000.0),
    "homo": ("eV", HARTREE_EV, "meV", 1000.0), "lumo": ("eV", HARTREE_EV, "meV", 1000.0),
    "mu": ("D", 1.0, "D", 1.0), "Cv": ("cal/mol K", 1.0, "cal/mol K", 1.0),
    "G": ("eV", HARTREE_EV, "meV", 1000.0), "H": ("eV", HARTREE_EV, "meV", 1000.0),
    "r2": ("bohr^2", 1.0, "bohr^2", 1.0), "U": ("eV", HARTREE_EV, "meV", 1000.0),
    "U0": ("eV", HARTREE_EV, "meV", 1000.0), "zpve": ("meV", HARTREE_EV * 1000, "meV", 1.0),
}
SPLIT = {"train": 100_000, "val": 17_748, "test": 13_083}
#: reference energies of the free atoms H, C, N, O, F (Hartree; Cv in cal/mol K), per target
ATOM_REF = {
    "U0": (-0.500273, -37.846772, -54.583861, -75.064579, -99.718730),
    "U": (-0.498857, -37.845355, -54.582445, -75.063163, -99.717314),
    "H": (-0.497912, -37.844411, -54.581501, -75.062219, -99.716370),
    "G": (-0.510927, -37.861317, -54.598897, -75.079532, -99.733544),
    "Cv": (2.981, 2.981, 2.981, 2.981, 2.981),
}
QM9PACK_COLUMNS = {
    "alpha": "Polarizability_bohr3", "gap": "HOMO_LUMO_gap_au", "homo": "HOMO_au",
    "lumo": "LUMO_au", "mu": "Dipole_debye", "Cv": "Heatcapacity_Cv_cal_mol_K",
    "G": "GibbsFreeEnergy_298K_au", "H": "Enthalphy_298K_au", "r2": "R2_bohr2",
    "U": "InternalEnergy_298K_au", "U0": "InternalEnergy_0K_au", "zpve": "ZPVE_au",
}
ELEMENTS = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
#: the paper's molecule model (T(3); SE(3)/SO(3) use nbhd 25, fill 0.5, 4 lift samples)
PAPER = {"k": 1536, "num_layers": 6}


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise ValueError(f"unknown QM9 target {target!r}; choose one of: {', '.join(TARGETS)}")
    return target


class QM9Task(CloudTask):
    name = "qm9"

    def model_config(self, target: str = "homo", group: str = "T3", k: int | None = None,
                     num_layers: int | None = None, nbhd: int | None = None,
                     fill: float | None = None, liftsamples: int | None = None,
                     alpha: float | None = None, augment: bool = True) -> dict:
        """The molecule model's config for one target (paper values by default)."""
        check_target(target)
        g = make_group(group, alpha)
        if g.space_dim != 3:
            raise ValueError(f"qm9 needs a group acting on R^3, got {group}")
        rand = g.random_lift
        cfg = {"arch": "molecule", "kind": "regress", "group": group, "chin": 15,
               "num_outputs": 1, "k": int(k or PAPER["k"]),
               "num_layers": int(PAPER["num_layers"] if num_layers is None else num_layers),
               "nbhd": int(nbhd or (25 if rand else 100)),
               "fill": float(fill or (0.5 if rand else 1.0)),
               "liftsamples": int(liftsamples or (4 if rand else 1)), "target": target,
               "target_names": [target], "unit": TARGETS[target][0], "augment": bool(augment)}
        return self.finish_config(cfg, alpha)

    def inputs(self, batch: dict, cfg: dict) -> dict:
        """charges / positions -> coords, values (15 features), mask."""
        if "coords" in batch:
            return batch
        z = batch["charges"]
        out = {k: v for k, v in batch.items() if k not in ("charges", "positions")}
        out.update(coords=batch["positions"], values=molecule_features(z), mask=z > 0)
        if "targets" not in out and cfg["target"] in batch:
            out["targets"] = batch[cfg["target"]][:, None]
        for name in TARGETS:
            out.pop(name, None)
        return out

    def augment(self, batch: dict, gen: np.random.Generator, cfg: dict) -> dict:
        """A random translation N(0, 0.5²) then a Haar-random rotation of each molecule."""
        if not cfg.get("augment", True):
            return batch
        x = batch["coords"].astype(np.float64)
        x = x + 0.5 * gen.standard_normal((len(x), 1, 3))
        rot = SO3().exp(np, SO3().random_element(np, (len(x),), PortableDraws(gen),
                                                 np.float64, None))
        x = np.einsum("bij,bnj->bni", rot, x)
        return {**batch, "coords": x.astype(batch["coords"].dtype)}

    def metrics(self, outputs: np.ndarray, data: Dataset, cfg: dict) -> dict[str, float]:
        ds = data if "targets" in data.arrays else Dataset(
            {"targets": data[cfg["target"]][:, None]}, data.source)
        out = super().metrics(outputs, ds, cfg)
        unit, _, paper_unit, factor = TARGETS[cfg["target"]]
        out[f"mae_{paper_unit}"] = out["mae"] * factor
        out["unit"] = unit
        return out

    def check(self, ds: Dataset, cfg: dict) -> None:
        src = ds.source
        for key in ("charges", "positions", cfg["target"]):
            if key not in ds.arrays:
                raise DataError(f"{src}: missing field {key!r}")
        z, x = ds["charges"], ds["positions"]
        if x.shape != (*z.shape, 3):
            raise DataError(f"{src}: field 'positions' must have shape {(*z.shape, 3)}, "
                            f"got {x.shape}")
        bad = ~np.isin(z, (0, *QM9_CHARGES))
        if bad.any():
            i = tuple(np.argwhere(bad)[0])
            raise DataError(f"{src}: field 'charges' holds {int(z[i])} (sample {i[0]}); "
                            "QM9 has H, C, N, O, F")
        for key in ("positions", cfg["target"]):
            if not np.isfinite(ds[key]).all():
                raise DataError(f"{src}: field {key!r} holds NaN or inf")

    def dataset_for_training(self, ds: Dataset, cfg: dict) -> Dataset:
        """The stored arrays plus ``targets`` (n, 1) of the config's target (for the
        standardisation)."""
        return Dataset({**ds.arrays, "targets": ds[cfg["target"]][:, None]}, ds.source)


def _convert(arrays: dict[str, np.ndarray], charges: np.ndarray, source: str,
             atom_refs: bool = False) -> dict:
    """Targets in the files' units -> :data:`TARGETS`' units. ``<target>_thermo`` fields are
    subtracted where present; ``atom_refs``: subtract the free atoms' :data:`ATOM_REF` (raw
    tables without thermo fields)."""
    out = {}
    counts = np.stack([(charges == z).sum(axis=1) for z in QM9_CHARGES], axis=1)
    for name, (_, factor, _, _) in TARGETS.items():
        if name not in arrays:
            continue
        v = np.asarray(arrays[name], dtype=np.float64)
        if v.shape != (len(charges),):
            raise DataError(f"{source}: field {name!r} must have one value per molecule, "
                            f"got shape {v.shape}")
        if f"{name}_thermo" in arrays:
            v = v - np.asarray(arrays[f"{name}_thermo"], dtype=np.float64)
        elif name in ATOM_REF and atom_refs:
            v = v - counts @ np.asarray(ATOM_REF[name])
        out[name] = v * factor
    return out


def _molecule_arrays(charges: np.ndarray, positions: np.ndarray, targets: dict,
                     source: str) -> Dataset:
    n = len(charges)
    pad = MAX_ATOMS - charges.shape[1]
    if pad < 0:
        raise DataError(f"{source}: molecules of up to {MAX_ATOMS} atoms expected, "
                        f"got {charges.shape[1]}")
    charges = np.pad(charges, ((0, 0), (0, pad))).astype(np.int64)
    positions = np.pad(positions, ((0, 0), (0, pad), (0, 0))).astype(np.float32)
    ds = Dataset({"charges": charges, "positions": positions,
                  **{k: v for k, v in targets.items()}}, source)
    if len(ds) != n:
        raise DataError(f"{source}: fields disagree in length")
    return ds


def load_cormorant(path: str | Path) -> Dataset:
    """One Cormorant-format ``.npz`` split of QM9 (energies in Hartree in the file, converted).

    Parameters
    ----------
    path : str or pathlib.Path
        The file, with ``charges``, ``positions`` and the target arrays.

    Returns
    -------
    Dataset
        ``charges`` (n, 29) int64 atomic numbers (0 = padding), ``positions`` (n, 29, 3) in Å,
        and one array (n,) per target, in the task's units.

    Raises
    ------
    DataError
        Naming the file and the field for missing or inconsistent data.
    """
    path = Path(path)
    arrays = read_npz(path, "QM9 file", ("charges", "positions"))
    charges = arrays["charges"].astype(np.int64)
    return _molecule_arrays(charges, arrays["positions"], _convert(arrays, charges, str(path)),
                            str(path))


def cormorant_splits(folder: str | Path) -> dict[str, Dataset]:
    folder = Path(folder)
    return {"train": load_cormorant(folder / "train.npz"),
            "val": load_cormorant(folder / "valid.npz"),
            "test": load_cormorant(folder / "test.npz")}


# --- qm9pack -------------------------------------------------------------------------------------
def qm9pack_dir() -> Path:
    try:
        import importlib.util

        spec = importlib.util.find_spec("qm9pack")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the QM9 tables come from the PyPI package qm9pack: "
                        "pip install 'lieconv[qm9]' (or pass --data-dir with Cormorant npz files)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _numbers(text: str) -> np.ndarray:
    return np.array(text.replace("[", " ").replace("]", " ").replace(",", " ").split(),
                    dtype=np.float64)


def read_qm9pack_csv(files: list[Path]) -> tuple[np.ndarray, np.ndarray, dict]:
    """(charges (n, 29), positions (n, 29, 3), {target: raw values}) from qm9pack's tables."""
    csv.field_size_limit(sys.maxsize)
    charges, positions, raw = [], [], {k: [] for k in QM9PACK_COLUMNS}
    for path in files:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = {"Elements", "XYZ_Ang", *QM9PACK_COLUMNS.values()} - set(reader.fieldnames
                                                                              or [])
            if missing:
                raise DataError(f"{path}: missing column(s) {sorted(missing)}")
            for line, row in enumerate(reader, 2):
                try:
                    elems = [e.strip(" '\"") for e in row["Elements"].strip("[]").split(",")]
                    z = np.array([ELEMENTS[e] for e in elems])
                    x = _numbers(row["XYZ_Ang"]).reshape(len(z), 3)
                    vals = {k: float(row[c]) for k, c in QM9PACK_COLUMNS.items()}
                except (KeyError, ValueError) as exc:
                    raise DataError(f"{path}, line {line}: malformed row ({exc})") from exc
                zz, xx = np.zeros(MAX_ATOMS, np.int64), np.zeros((MAX_ATOMS, 3))
                zz[:len(z)], xx[:len(z)] = z, x
                charges.append(zz)
                positions.append(xx)
                for k, v in vals.items():
                    raw[k].append(v)
    return np.stack(charges), np.stack(positions), {k: np.array(v) for k, v in raw.items()}


def load_qm9pack(seed: int = 0, cache_dir: str | Path | None = None,
                 sizes: dict | None = None) -> dict[str, Dataset]:
    """All molecules of the qm9pack package, converted and split (see the module documentation).

    The parsed tables are cached as an ``.npz`` in ``cache_dir``.

    Parameters
    ----------
    seed : int, default 0
        Seed of the split.
    cache_dir : str or pathlib.Path, optional
        Where the parsed tables are cached; default ``~/.cache/lieconv``.
    sizes : dict, optional
        Molecules per split, ``{"train": ..., "val": ..., "test": ...}``; default ``SPLIT``.

    Returns
    -------
    dict of str to Dataset
        ``{"train", "val", "test"}``, each as :func:`load_cormorant` returns.

    Raises
    ------
    DataError
        When qm9pack is missing, its tables are unreadable, or it holds fewer molecules than the
        split needs.
    """
    folder = qm9pack_dir()
    files = sorted(folder.glob("qm9_part*.csv"))
    if not files:
        raise DataError(f"{folder} holds no qm9_part*.csv tables")
    charges, positions, targets = _cached_tables(files, cache_dir)
    n = len(charges)
    sizes = {**SPLIT, **(sizes or {})}
    if sum(sizes.values()) > n:
        raise DataError(f"qm9pack has {n} molecules, the split needs {sum(sizes.values())}")
    perm = np.random.default_rng([seed, 9]).permutation(n)
    out, pos = {}, 0
    for name in ("train", "val", "test"):
        ids = np.sort(perm[pos:pos + sizes[name]])
        out[name] = _molecule_arrays(charges[ids], positions[ids],
                                     {k: v[ids] for k, v in targets.items()},
                                     f"qm9pack ({name})")
        pos += sizes[name]
    return out


def _cached_tables(files: list[Path], cache_dir: str | Path | None) -> tuple:
    from ..files import atomic_write

    key = hashlib.sha256("|".join(f"{p}:{p.stat().st_size}" for p in files).encode())
    cache = Path(cache_dir or Path.home() / ".cache" / "lieconv")
    path = cache / f"qm9pack-{key.hexdigest()[:16]}.npz"
    if path.is_file() and not path.is_symlink():
        with np.load(path) as f:
            return f["charges"], f["positions"], {k: f[k] for k in TARGETS}
    charges, positions, raw = read_qm9pack_csv(files)
    targets = _convert(raw, charges, "qm9pack", atom_refs=True)
    cache.mkdir(parents=True, exist_ok=True)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: savez would add ".npz" to a name
            np.savez(f, charges=charges, positions=positions.astype(np.float32), **targets)

    atomic_write(path, write)
    return charges, positions.astype(np.float32), targets


def load_splits(data_dir: str | None = None, seed: int = 0, cache_dir: str | None = None,
                sizes: dict | None = None) -> tuple[dict[str, Dataset], dict[str, Any]]:
    """(datasets, a description of their origin for ``config.json``)."""
    if data_dir is not None:
        data = cormorant_splits(data_dir)
        if sizes:
            data = {k: v.subset(slice(0, sizes.get(k, len(v)))) for k, v in data.items()}
        return data, {"data": "cormorant npz", "dir": str(data_dir)}
    data = load_qm9pack(seed, cache_dir, sizes)
    return data, {"data": "qm9pack", "seed": seed, "sizes": {k: len(v) for k, v in data.items()}}
