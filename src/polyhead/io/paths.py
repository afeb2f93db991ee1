"""Output paths: one place that decides whether a command may write where it was asked to.

Every command and :meth:`save` go through :func:`check_output` **before any work starts**, so
a bad path costs a second, not a 30-minute comparison. The rules:

* the output is never one of the command's inputs (compared after resolving links), with or
  without ``--force``;
* an existing output is replaced only with ``--force`` (``overwrite=True`` in Python);
* even with ``--force``, only something polyhead wrote is replaced: a model directory must hold a
  polyhead manifest and nothing but the files that manifest lists, and a file output must be a
  regular file (never a directory);
* the folder the output goes into must exist and be writable.

Files and directories are written under a temporary name beside the target and renamed into
place; :func:`finalize_mode` then gives them the permissions the process's umask asks for (a
temporary file is created 0600 and a temporary directory 0700, which a web server or a service
account could not read).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..exceptions import PolyheadError

MANIFEST = "manifest.json"


class OutputPathError(PolyheadError):
    """An output path cannot or must not be written."""


def is_glob(text: str) -> bool:
    """Whether a path given on the command line is a pattern (``data/*.parquet``)."""
    return any(c in text for c in "*?[")


def _resolved(path: Path) -> Path:
    try:
        return path.expanduser().resolve(strict=False)
    except (OSError, RuntimeError):  # a symlink loop
        return path.expanduser().absolute()


def _same_file(a: Path, b: Path) -> bool:
    if _resolved(a) == _resolved(b):
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def model_files(path: Path) -> set[str] | None:
    """The files a polyhead model directory's manifest says it wrote, or None when ``path`` is
    not a polyhead model directory."""
    try:
        with open(path / MANIFEST, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != "polyhead-model":
        return None
    listed = manifest.get("files_sha256") or {}
    names = {MANIFEST, "weights.safetensors"}
    if isinstance(listed, dict):
        names |= {str(n) for n in listed}
    return names


def check_output(path: str | os.PathLike[str], *, kind: str = "file", force: bool = False,
                 inputs: Iterable[str | os.PathLike[str]] = (), option: str = "--force",
                 suffixes: tuple[str, ...] | None = None) -> Path:
    """Check that ``path`` may be written; return it as a Path.

    Parameters
    ----------
    kind : {"file", "model"}
        A file (predictions, a report, a figure) or a model directory.
    force : bool
        Whether an existing output of ours may be replaced.
    inputs : paths the command reads; the output must be none of them.
    option : how the caller spells "force" in messages (``--force`` or ``overwrite=True``).
    suffixes : the file name endings allowed (e.g. ``(".html",)``), checked case-insensitively.

    Raises
    ------
    OutputPathError
        With one line naming the path and what to do.
    """
    text = os.fspath(path)
    p = Path(text)
    if not text.strip():
        raise OutputPathError("the output path is empty")
    for source in inputs:
        if _same_file(p, Path(source)):
            raise OutputPathError(f"refusing to write {p}: it is the input {source}; choose "
                                  "another output path")
    if kind == "file" and (text.endswith(("/", os.sep)) or p.is_dir()):
        raise OutputPathError(f"cannot write {p}: it is a directory; give a file name")
    if suffixes is not None and not p.name.lower().endswith(suffixes):
        raise OutputPathError(f"{p}: the output must end in {' or '.join(suffixes)}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise OutputPathError(f"cannot write {p}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot write {p}: folder {parent} is not writable")
    if os.path.lexists(p):
        _check_replaceable(p, kind=kind, force=force, option=option)
    return p


def _check_replaceable(p: Path, *, kind: str, force: bool, option: str) -> None:
    if kind == "model":
        if not p.is_dir() or p.is_symlink():
            raise OutputPathError(f"{p} exists and is not a polyhead model directory; refusing "
                                  "to replace it (even with {option})".replace("{option}", option))
        ours = model_files(p)
        if ours is None:
            raise OutputPathError(f"{p} exists and is not a polyhead model directory (no "
                                  f"polyhead {MANIFEST}); refusing to replace it, even with "
                                  f"{option}")
        foreign = sorted(e.name for e in os.scandir(p) if e.name not in ours)
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise OutputPathError(f"{p} is a polyhead model directory that also holds files "
                                  f"polyhead did not write ({shown}); refusing to replace it, "
                                  f"even with {option}")
        if not force:
            raise OutputPathError(f"{p} already exists; pass {option} to replace it")
        return
    mode = os.lstat(p).st_mode
    if stat.S_ISDIR(mode):
        raise OutputPathError(f"cannot write {p}: it is a directory; give a file name")
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise OutputPathError(f"refusing to replace {p}: it is not a regular file")
    if not force:
        raise OutputPathError(f"{p} already exists; pass {option} to replace it")


def umask() -> int:
    """The process's current umask (0o022 when it cannot be read)."""
    try:  # Linux: reading it does not change it (os.umask would, for every thread)
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    value = os.umask(0o022)
    os.umask(value)
    return value


def finalize_mode(path: Path) -> None:
    """Give a finished output (a file, or a directory and what is in it) the permissions a
    file created normally would have under the umask."""
    mask = umask()
    if path.is_dir():
        os.chmod(path, 0o777 & ~mask)
        for entry in os.scandir(path):
            if entry.is_file(follow_symlinks=False):
                os.chmod(entry.path, 0o666 & ~mask)
    else:
        os.chmod(path, 0o666 & ~mask)


@contextlib.contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target`` to write; on success it gets the umask's mode and is
    renamed onto ``target`` (a checked output), otherwise it is removed."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix,
                                dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        finalize_mode(tmp)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
