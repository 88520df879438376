"""Safe file writes shared by the tasks' data caches and the application's run folders: atomic
replacement through a temporary file in the same folder, and refusal of symbolic links."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: temporary files are named TMP_PREFIX + target name + random part + TMP_SUFFIX (run folders
#: remove orphaned ones)
TMP_PREFIX, TMP_SUFFIX = ".lieconv-", ".tmp"


class RunDirError(ValueError):
    """A run folder that cannot be used as asked (its path, contents, lock or permissions)."""


def refuse_symlink(path: Path, what: str = "file") -> None:
    """RunDirError if ``path`` is a symbolic link (dangling ones included)."""
    if path.is_symlink():
        raise RunDirError(f"{path} is a symbolic link; lieconv neither reads nor writes "
                          f"{what}s through links in a run folder")


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any],
                 overwrite: bool = True) -> Path:
    """Write ``path`` through ``write(tmp_path)`` and an atomic rename in the same folder.

    A symbolic link at ``path`` is refused (never followed); with ``overwrite=False`` an
    existing file is refused too. The temporary file is removed if ``write`` fails."""
    path = Path(path)
    refuse_symlink(path)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} already exists; refusing to overwrite it "
                              "(choose another output folder or pass --overwrite)")
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", suffix=TMP_SUFFIX,
                               dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 -> what a plain open would give
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
