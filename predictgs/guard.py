"""What keeps one command from destroying another's files: folder kinds (markers), output-path checks,
writer locks and the atomic replacement of a decoded folder.

**Kinds.** predictgs writes three kinds of folder: a run (``predictgs train``), a decoded model
(``predictgs decode``) and a scene (``predictgs synth``). Each gets a small marker, ``.predictgs.json``
(``{"kind", "command", "version", "created"}``). Folders written before markers existed, and scenes from
elsewhere, are recognised by their files (:func:`folder_kind`): a run has ``config.yaml`` and
``checkpoint.pt`` (or ``train.log``), a decoded model ``model.pt`` and ``config.yaml``, a scene the layout
``load_scene`` detects (COLMAP, LLFF, Blender, instant-ngp).

**Outputs never overwrite inputs** (:func:`check_train_output`, :func:`check_bitstream_output`,
:func:`check_decoded_output`, :func:`check_scene_output`): an output path that is, or is inside, a folder of
another kind than the command writes is refused with one line saying what it would have destroyed.

**Locks** (:func:`folder_lock`): a command that writes into a run or decoded folder holds an advisory
``fcntl.flock`` on ``FOLDER/.predictgs.lock`` for as long as it writes; the file holds the holder's pid,
host, command and start time. A second writer gets one line naming the holder (exit 2). The kernel drops
the lock of a process that dies, even by SIGKILL; its details stay in the file, so the next writer sees
that the lock was left behind, says so, and takes it over. On a file system without ``flock`` support
the lock is skipped with a warning.

**Decoded folders are replaced whole** (:func:`replace_folder`): ``decode`` writes the new folder beside
the target and swaps the two with one ``renameat2(RENAME_EXCHANGE)`` (Linux), so the folder is the old
one or the new one, never a mix (no metrics.json of the previous model beside the new one).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import shlex
import shutil
import socket
import time
import warnings
from pathlib import Path

from .errors import ConfigError

MARKER = ".predictgs.json"
LOCK = ".predictgs.lock"
KINDS = ("run", "decoded", "scene")
KIND_NAMES = {"run": "run folder", "decoded": "decoded model folder", "scene": "scene folder"}
# Files of a run folder (runs.py names them; repeated here so that this module stays import-light).
RUN_FILES = frozenset({"config.yaml", "checkpoint.pt", "metrics.json", "per_view.json", "per_view_decoded.json",
                       "train.log", MARKER, LOCK})
TEMP_INFIX = ".tmp-"

_command = "predictgs"


def set_command(argv) -> None:
    """The command line recorded in markers and locks (the CLI sets it; a library call keeps 'predictgs')."""
    global _command
    _command = _one_line(shlex.join(["predictgs", *map(str, argv)]))


def current_command() -> str:
    return _command


def _one_line(text: str, limit: int = 300) -> str:
    text = "".join(ch if ch.isprintable() else "?" for ch in str(text))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("predictgs")
    except Exception:  # noqa: BLE001 - an uninstalled checkout
        return "unknown"


# -- kinds -------------------------------------------------------------------------------------------------
def write_marker(folder: Path, kind: str) -> Path:
    """``folder/.predictgs.json`` saying what the folder is and which command wrote it."""
    from .io import write_json

    if kind not in KINDS:
        raise ValueError(f"unknown folder kind {kind!r}")
    return write_json(Path(folder) / MARKER, {"kind": kind, "command": current_command(), "version": _version(),
                                              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def read_marker(folder: Path) -> dict | None:
    """The folder's marker, or None (absent, unreadable or not a marker: the files decide then)."""
    path = Path(folder) / MARKER
    try:
        if not path.is_file() or path.stat().st_size > 1 << 16:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) and data.get("kind") in KINDS else None


def folder_kind(folder: Path) -> str | None:
    """"run", "decoded", "scene" or None (not a folder, or none of ours)."""
    folder = Path(folder)
    try:
        if not folder.is_dir():
            return None
        marker = read_marker(folder)
        if marker is not None:
            return marker["kind"]
        has = lambda name: (folder / name).exists()  # noqa: E731
        if has("config.yaml") and (has("checkpoint.pt") or has("train.log")):
            return "run"
        if has("model.pt") and has("config.yaml"):
            return "decoded"
    except OSError:
        return None
    return "scene" if _is_scene(folder) else None


def _is_scene(folder: Path) -> bool:
    from .data.scene import detect_format
    from .errors import SceneError

    try:
        detect_format(folder)
    except (SceneError, OSError):
        return False
    return True


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(Path(path).expanduser()))


def enclosing(path: Path, kinds) -> tuple[Path, str] | None:
    """The nearest folder above ``path`` (``path`` excluded) of one of ``kinds``: (folder, kind), or None."""
    for parent in _absolute(path).parents:
        kind = folder_kind(parent)
        if kind in kinds:
            return parent, kind
    return None


def _inside(path: Path, folder: Path) -> bool:
    a, b = _absolute(path), _absolute(folder)
    return a == b or b in a.parents


def _refuse_enclosing(path: Path, option: str, kinds, what: str) -> None:
    found = enclosing(path, kinds)
    if found is not None:
        folder, kind = found
        raise ConfigError(f"{option} {path} is inside the {KIND_NAMES[kind]} {folder}: {what} there could destroy "
                          f"its files; choose a path outside it")


# -- output paths ----------------------------------------------------------------------------------------
def check_train_output(run_dir: Path, scene: Path, option: str = "--out") -> None:
    """A run folder: not a scene or decoded folder, not inside one, not the scene it trains on."""
    run_dir = Path(run_dir)
    if _inside(run_dir, scene):
        where = "is" if _absolute(run_dir) == _absolute(scene) else "is inside"
        raise ConfigError(f"{option} {run_dir} {where} the scene folder {scene} it trains on; a run writes its "
                          "own files (config.yaml, metrics.json, ...) there: choose another folder")
    kind = folder_kind(run_dir)
    if kind in ("scene", "decoded"):
        raise ConfigError(f"{option} {run_dir} is a {KIND_NAMES[kind]}; training would write its run files "
                          "into it: choose another folder")
    _refuse_enclosing(run_dir, option, ("scene", "decoded"), "writing a run")


def check_bitstream_output(path: Path, run_dir: Path | None = None, option: str = "--output") -> None:
    """A bitstream file: not a file of a run folder (config.yaml, checkpoint.pt, metrics.json, ...), not in
    a scene or decoded folder, and not an existing file that is not a bitstream."""
    from .codec.container import MAGIC

    path = Path(path)
    parent = path.parent
    if folder_kind(parent) == "run" and path.name in RUN_FILES:
        raise ConfigError(f"{option} {path} is the run's own {path.name}; writing the bitstream there would "
                          f"destroy it: choose another name (e.g. {parent / 'scene.pgs'})")
    _refuse_enclosing(path, option, ("scene", "decoded"), "writing a bitstream")
    if path.is_file() and path.stat().st_size > 0:
        with open(path, "rb") as handle:
            head = handle.read(len(MAGIC))
        if head != MAGIC:
            raise ConfigError(f"{option} {path} exists and is not a .pgs bitstream; refusing to overwrite it")


def check_decoded_output(out_dir: Path, source: Path | None = None, option: str = "--output") -> None:
    """A decoded model folder: absent, empty or a decoded model folder (which decode replaces whole); not a
    run or scene folder, not inside a scene or decoded folder, not holding the bitstream it decodes."""
    text = str(out_dir)
    if not text.strip():
        raise ConfigError(f"{option}: an empty path; name the folder to write (e.g. decoded/scene)")
    out_dir = Path(out_dir)
    if source is not None and _inside(source, out_dir):
        raise ConfigError(f"{option} {out_dir} holds the bitstream {source}, and decode replaces the whole folder: "
                          "choose another folder")
    kind = folder_kind(out_dir)
    if kind in ("run", "scene"):
        hint = f" (e.g. {out_dir / 'decoded'})" if kind == "run" else ""
        raise ConfigError(f"{option} {out_dir} is a {KIND_NAMES[kind]}; decoding into it would destroy its "
                          f"files: choose another folder{hint}")
    if kind is None and out_dir.is_dir():
        others = sorted(p.name for p in out_dir.iterdir() if p.name != LOCK)
        if others:
            raise ConfigError(f"{option} {out_dir} exists and is not a decoded model folder (it holds "
                              f"{len(others)} {'entry' if len(others) == 1 else 'entries'}, e.g. {others[0]!r}); "
                              "decode writes into an empty folder or replaces a decoded one: choose another folder")
    _refuse_enclosing(out_dir, option, ("scene", "decoded"), "writing a decoded model")


def check_scene_output(out_dir: Path, option: str = "--out") -> None:
    """A scene folder: not a run or decoded folder, nor inside one."""
    kind = folder_kind(out_dir)
    if kind in ("run", "decoded"):
        raise ConfigError(f"{option} {out_dir} is a {KIND_NAMES[kind]}; writing a scene into it would mix the "
                          "two: choose another folder")
    _refuse_enclosing(out_dir, option, ("run", "decoded"), "writing a scene")


# -- locks ------------------------------------------------------------------------------------------------
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


def _holder_text(info: dict) -> str:
    parts = [f"pid {info.get('pid', '?')}"]
    if info.get("host"):
        parts.append(f"on {info['host']}")
    if info.get("command"):
        parts.append(f"`{info['command']}`")
    if info.get("since"):
        parts.append(f"since {info['since']}")
    return _one_line(" ".join(parts), 400)


def _read_holder(handle: int) -> dict | None:
    try:
        os.lseek(handle, 0, os.SEEK_SET)
        raw = os.read(handle, 1 << 14)
    except OSError:
        return None
    if not raw.strip():
        return None
    try:
        info = json.loads(raw.decode("utf-8", errors="replace"))
    except ValueError:
        return {"pid": "?", "command": "unknown (damaged lock file)"}
    return info if isinstance(info, dict) else {"pid": "?"}


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, TypeError, OverflowError):
        return False
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FolderLock:
    """An exclusive advisory lock on ``folder/.predictgs.lock``; see the module docstring."""

    def __init__(self, folder: Path, what: str = "folder"):
        self.folder = Path(folder)
        self.what = what
        self.path = self.folder / LOCK
        self.handle: int | None = None
        self.took_over: dict | None = None
        self.unsupported = False  # the file system has no flock: the lock is skipped

    @property
    def held(self) -> bool:
        return self.handle is not None

    def acquire(self) -> "FolderLock":
        for _ in range(10):  # the lock file may be replaced between open and flock (a decoded folder swap)
            handle = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(handle) or {}
                os.close(handle)
                raise ConfigError(f"{self.folder} is in use by another predictgs process ({_holder_text(holder)}); "
                                  f"wait for it to finish or stop it, then try again") from None
            except OSError as err:
                os.close(handle)
                if err.errno in _UNSUPPORTED:
                    self.unsupported = True
                    warnings.warn(f"{self.folder}: the file system does not support file locks; concurrent "
                                  "writers to this folder are not detected", stacklevel=3)
                    return self
                raise
            try:
                same = os.fstat(handle).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(handle)
                continue
            self.handle = handle
            break
        else:  # pragma: no cover - ten swaps in a row
            raise ConfigError(f"{self.folder}: its lock file keeps changing; is another process replacing it?")
        previous = _read_holder(self.handle)
        if previous is not None:
            self.took_over = previous
            state = "no longer running" if previous.get("host") == socket.gethostname() and \
                not _alive(previous.get("pid")) else "it ended without releasing it"
            warnings.warn(f"{self.folder}: taking over the lock left by {_holder_text(previous)} ({state})",
                          stacklevel=3)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": current_command(),
                "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(self.handle, 0)
        os.lseek(self.handle, 0, os.SEEK_SET)
        os.write(self.handle, (json.dumps(info) + "\n").encode())
        os.fsync(self.handle)
        return self

    def release(self) -> None:
        if self.handle is None:
            return
        try:
            os.ftruncate(self.handle, 0)  # an empty lock file: released cleanly
        except OSError:
            pass
        finally:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            os.close(self.handle)
            self.handle = None

    def ensure(self) -> "FolderLock":
        """Acquire the lock unless it is held (for a folder that did not exist at ``__enter__``)."""
        return self if self.held or self.unsupported else self.acquire()

    def __enter__(self) -> "FolderLock":
        """Acquire the lock if the folder exists (else call :meth:`ensure` once it is made)."""
        return self.ensure() if self.folder.is_dir() else self

    def __exit__(self, *exc) -> None:
        self.release()


@contextlib.contextmanager
def folder_lock(folder: Path, what: str = "folder"):
    """Hold the writer lock of an existing folder for the ``with`` block."""
    lock = FolderLock(folder, what).acquire()
    try:
        yield lock
    finally:
        lock.release()


# -- replacing a folder whole ----------------------------------------------------------------------------
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where that is not available."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def temporary_sibling(target: Path) -> Path:
    """A new empty folder beside ``target`` (same file system, so it can be renamed over it)."""
    import tempfile

    target = Path(target)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}{TEMP_INFIX}", dir=target.parent))


def remove_stale_siblings(target: Path) -> None:
    """Leftovers of killed replacements of ``target`` (call while holding its lock)."""
    target = Path(target)
    for stale in target.parent.glob(f".{target.name}{TEMP_INFIX}*"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)


def replace_folder(new: Path, target: Path) -> None:
    """Put the folder ``new`` at ``target`` (an existing folder, which is removed) in one atomic step where
    the system allows it (renameat2), else in two renames (a kill between them leaves no ``target`` and the
    old folder under a ``.NAME.tmp-*`` name, removed by the next replacement)."""
    new, target = Path(new), Path(target)
    if not target.exists():
        os.rename(new, target)
        return
    if _exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)  # now the old folder
        return
    old = Path(f"{new}-old")
    os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)


__all__ = ["MARKER", "LOCK", "KINDS", "FolderLock", "folder_lock", "folder_kind", "write_marker", "read_marker",
           "set_command", "current_command", "check_train_output", "check_bitstream_output",
           "check_decoded_output", "check_scene_output", "replace_folder", "temporary_sibling",
           "remove_stale_siblings", "enclosing"]
