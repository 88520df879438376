"""Run folders: where a training or evaluation writes, and the rules that keep what it wrote safe.

A run folder holds the files one run owns (:data:`OWNED`) and nothing that it may not replace:

* a new run goes into a folder that does not exist or is empty; a folder that already holds a
  run (``config.json``) is continued only with ``resume`` and replaced only with ``overwrite``;
  a folder holding other files is refused unless ``overwrite``, and even then only the files
  the run owns are removed and replaced — the others stay untouched;
* every file is written to a temporary file in the same folder and renamed over its target
  (:func:`atomic_write`), so a killed process leaves the old file or the new one, never half of
  one; orphaned temporary files are removed when the next run opens the folder;
* symbolic links inside a run folder are refused when reading and never followed when writing;
* an exclusive lock (``fcntl.flock`` on ``.lock``) is held while a run writes: a second process
  gets an error naming the holder's pid;
* a checkpoint is one safetensors file whose metadata carries the training history and a sha256
  of its tensors (:mod:`lieconv_core.app.io`), so weights, optimizer state and history cannot
  disagree, and flipped bytes are found when it is read.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ...files import TMP_PREFIX, TMP_SUFFIX, RunDirError, atomic_write, refuse_symlink

CONFIG, WEIGHTS, LAST = "config.json", "model.safetensors", "last.safetensors"
HISTORY, METRICS, LOCK = "history.json", "metrics.json", ".lock"
#: names a run may write (and replace on ``overwrite``); plots end in .png
OWNED = frozenset({CONFIG, WEIGHTS, LAST, HISTORY, METRICS, "predictions.npz", "table.txt",
                   "compare.json"})


def owned(name: str) -> bool:
    """Whether a run writes files called ``name`` (and may replace them on ``overwrite``)."""
    return name in OWNED or name.endswith(".png")


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Parsed JSON of ``path``; RunDirError naming the file if it is missing, a link or invalid."""
    path = Path(path)
    refuse_symlink(path, what)
    if not path.is_file():
        raise RunDirError(f"{what} {path} does not exist")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path} is not valid JSON: {exc}") from exc


class RunDir:
    """An open run folder: the lock, the atomic writers and the ownership rules.

    Use :meth:`open` (a context manager is fine: ``with RunDir.open(...) as run``).

    Parameters
    ----------
    path : pathlib.Path
        The folder.
    lock_fd : int or None
        The descriptor holding the folder's lock (:meth:`open` takes it).
    """

    def __init__(self, path: Path, lock_fd: int | None):
        self.path, self._lock_fd = path, lock_fd

    # --- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike, mode: str = "new", overwrite: bool = False) -> RunDir:
        """Open ``path`` for a run and take its lock.

        Parameters
        ----------
        path : str or os.PathLike
            The folder (created if missing).
        mode : {"new", "resume", "output"}, default "new"
            "new": a training run, so the folder must be new or empty, or hold a run that
            ``overwrite`` replaces; "resume": it must hold a run; "output": an evaluation or
            prediction folder, whose owned files are replaced only with ``overwrite``.
        overwrite : bool, default False
            Allow replacing the files a run owns.

        Returns
        -------
        RunDir
            The open folder, locked until :meth:`close`.

        Raises
        ------
        RunDirError, FileExistsError
            With a sentence naming the folder.
        """
        if mode not in ("new", "resume", "output"):
            raise ValueError(f"mode must be 'new', 'resume' or 'output', got {mode!r}")
        path = Path(path)
        _check_parent(path)
        refuse_symlink(path, "folder")
        if path.exists() and not path.is_dir():
            raise RunDirError(f"--out {path} is a file, not a folder")
        if mode == "resume" and not (path / CONFIG).is_file():
            raise RunDirError(f"nothing to resume: {path / CONFIG} does not exist")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirError(f"cannot create the output folder {path}: {exc.strerror}") from exc
        _check_writable(path)
        run = cls(path, _lock(path))
        try:
            run._clean_orphans()
            if mode == "new":
                run._claim(overwrite)
            elif mode == "output":
                run._check_outputs(overwrite)
        except BaseException:
            run.close()
            raise
        return run

    def _claim(self, overwrite: bool) -> None:
        """A new run here: refuse what it may not replace, remove the owned files it replaces."""
        names = self.entries()
        if not names:
            return
        if not overwrite:
            if CONFIG in names:
                raise FileExistsError(f"{self.path} already holds a run; pass --resume to "
                                      "continue it or --overwrite to replace it")
            raise FileExistsError(f"{self.path} holds files that are not a lieconv run "
                                  f"({', '.join(sorted(names)[:5])}); choose a new folder "
                                  "(with --overwrite only the run's own files are replaced)")
        for name in names:
            if owned(name):
                p = self.path / name
                if p.is_symlink() or p.is_file():
                    p.unlink()

    def _check_outputs(self, overwrite: bool) -> None:
        if overwrite:
            return
        taken = sorted(n for n in self.entries() if owned(n))
        if taken:
            raise FileExistsError(f"{self.path} already holds {', '.join(taken[:5])}; refusing "
                                  "to overwrite (choose another --out or pass --overwrite)")

    def entries(self) -> list[str]:
        """Names in the folder, less the lock and temporary files.

        Returns
        -------
        list of str
            Sorted file names.
        """
        return [p.name for p in self.path.iterdir()
                if p.name != LOCK and not _is_tmp(p.name)]

    def _clean_orphans(self) -> None:
        for p in self.path.iterdir():
            if _is_tmp(p.name) and not p.is_symlink() and p.is_file():
                p.unlink()

    # --- writing -------------------------------------------------------------------------------
    def file(self, name: str) -> Path:
        """The path of a file in the folder.

        Parameters
        ----------
        name : str
            A file name in the folder (no separators, not the lock).

        Returns
        -------
        pathlib.Path
            ``path / name``.

        Raises
        ------
        ValueError
            For a name with separators, ``.``, ``..`` or the lock's name.
        """
        if not name or "/" in name or os.sep in name or name in (".", "..", LOCK):
            raise ValueError(f"not a file name in a run folder: {name!r}")
        return self.path / name

    def write_json(self, name: str, obj: Any) -> Path:
        """Write ``obj`` as JSON (sorted keys, no NaN), atomically.

        Parameters
        ----------
        name : str
            A file name in the folder (no separators, not the lock).
        obj : object
            JSON-serialisable data.

        Returns
        -------
        pathlib.Path
            The written file.
        """
        text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False)
        return atomic_write(self.file(name), lambda tmp: Path(tmp).write_text(text + "\n"))

    def write_text(self, name: str, text: str) -> Path:
        """Write text, atomically.

        Parameters
        ----------
        name : str
            A file name in the folder (no separators, not the lock).
        text : str
            The contents.

        Returns
        -------
        pathlib.Path
            The written file.
        """
        return atomic_write(self.file(name), lambda tmp: Path(tmp).write_text(text))

    def save_figure(self, name: str, fig: Any, dpi: int = 110) -> Path:
        """Save a matplotlib figure as PNG, atomically.

        Parameters
        ----------
        name : str
            A file name in the folder (no separators, not the lock).
        fig : matplotlib.figure.Figure
            The figure.
        dpi : int, default 110
            Resolution.

        Returns
        -------
        pathlib.Path
            The written file.
        """
        return atomic_write(self.file(name), lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))

    def read_json(self, name: str) -> Any:
        """Read a JSON file of the folder.

        Parameters
        ----------
        name : str
            A file name in the folder (no separators, not the lock).

        Returns
        -------
        object
            The parsed data.
        """
        return read_json(self.file(name))

    # --- life ----------------------------------------------------------------------------------
    def close(self) -> None:
        """Release the folder's lock (idempotent)."""
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _is_tmp(name: str) -> bool:
    return name.startswith(TMP_PREFIX) and name.endswith(TMP_SUFFIX)


def _check_parent(path: Path) -> None:
    """RunDirError if a component above ``path`` is a file (checked before any work starts)."""
    for parent in [*reversed(path.parents)]:
        if parent.exists() and not parent.is_dir():
            raise RunDirError(f"cannot use --out {path}: {parent} is a file, not a folder")


def _check_writable(path: Path) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + "probe.", suffix=TMP_SUFFIX, dir=path)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise RunDirError(f"cannot write into {path}: {exc.strerror}") from exc


def _lock(path: Path) -> int:
    """Take the folder's exclusive lock; RunDirError naming the holder's pid if taken."""
    lock = path / LOCK
    refuse_symlink(lock)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise RunDirError(f"{path} is in use by another lieconv process (pid {holder}); "
                              "wait for it to finish or choose another folder") from exc
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd
