"""Writing files so that a reader never sees half of one: every file the project writes goes through
:func:`write_atomic` (a temporary file in the same folder, flushed to disk, then ``os.replace``).

A process killed in the middle of a write leaves the previous file (or none), never a truncated one;
a leftover ``.tmp-*`` file is harmless and is overwritten by the next write.

:func:`check_output_dir` and :func:`check_output_file` check an output path given on the command line
before any work is done: it is (or can become) a folder, resp. a regular file, and its folder is writable.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path

import numpy as np

from .errors import ConfigError


def _umask_mode() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


_NEW_FILE_MODE = _umask_mode()  # read once, at import (os.umask can only be read by setting it)


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")  # pragma: no cover - a relative path's parents end in "."


def _probe_writable(folder: Path, option: str, path: Path) -> None:
    """Create and remove a temporary file in ``folder`` (os.access is no test for root or read-only mounts)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise ConfigError(f"{option} {path}: cannot write in {folder} ({err.strerror or err})") from None


def check_output_dir(path: str | Path, option: str = "output folder") -> Path:
    """An output folder: an existing folder, or a path whose nearest existing parent is a writable
    folder. Nothing is created. ConfigError naming ``option`` otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path} exists and is not a folder")
    ancestor = _existing_ancestor(path)
    if not ancestor.is_dir():
        raise ConfigError(f"{option} {path}: {ancestor} is a file, not a folder")
    _probe_writable(ancestor, option, path)
    return path


def check_output_file(path: str | Path, option: str = "output file") -> Path:
    """An output file: absent, or an existing regular file, in a folder that exists or can be created
    and is writable. Devices, pipes and folders are refused (an atomic write would replace them)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder; give a file name")
    if path.exists() and not path.is_file():
        raise ConfigError(f"{option} {path} exists and is not a regular file")
    ancestor = _existing_ancestor(path.parent)
    if not ancestor.is_dir():
        raise ConfigError(f"{option} {path}: {ancestor} is a file, not a folder")
    _probe_writable(ancestor, option, path)
    return path


def write_atomic(path: str | Path, data: bytes | str, encoding: str = "utf-8") -> Path:
    """Write ``data`` to ``path`` atomically (parent folders are created). Returns the path.

    A symbolic link is followed (its target is replaced, the link kept); a path that exists and is not a
    regular file (a folder, a device such as /dev/null, a pipe) is refused with a ConfigError."""
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    if path.exists() and not path.is_file():
        raise ConfigError(f"{path} exists and is not a regular file; refusing to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode(encoding) if isinstance(data, str) else data
    # mkstemp creates the file readable by its owner only; give it the mode a plain open() would (the
    # umask's), or keep the mode of the file it replaces.
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else _NEW_FILE_MODE
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        os.fchmod(handle, mode)
        with os.fdopen(handle, "wb") as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_torch_atomic(obj, path: str | Path) -> Path:
    """``torch.save`` through :func:`write_atomic` (the object is serialised in memory first)."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return write_atomic(path, buffer.getvalue())


def json_default(value):
    """JSON for the values metrics hold besides plain Python: numpy scalars, tensors, paths."""
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # torch tensors, without importing torch here
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def write_json(path: str | Path, data) -> Path:
    """``data`` as indented JSON, atomically."""
    return write_atomic(path, json.dumps(data, indent=2, default=json_default) + "\n")
