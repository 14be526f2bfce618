"""Writing files so that a reader never sees half of one: every file the project writes goes through
:func:`write_atomic` (a temporary file in the same folder, flushed to disk, then ``os.replace``).

A process killed in the middle of a write leaves the previous file (or none), never a truncated one;
a leftover ``.tmp-*`` file is harmless and is overwritten by the next write.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np


def write_atomic(path: str | Path, data: bytes | str, encoding: str = "utf-8") -> Path:
    """Write ``data`` to ``path`` atomically (parent folders are created). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode(encoding) if isinstance(data, str) else data
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
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
